#!/usr/bin/env bash
# Prints a directory to put on PYTHONPATH holding Confluent's Python client (confluent-kafka
# with its Avro serializers, pinned), which the schema-registry interop tests drive. Installed
# with pip into a cache outside the clone when missing:
#   $PYDEPS_CACHE (default ~/.cache/switchboard)/confluent-kafka-<version>
set -euo pipefail
version="2.12.1"
cache="${PYDEPS_CACHE:-$HOME/.cache/switchboard}"
dir="$cache/confluent-kafka-$version"
check() { PYTHONPATH="$1" python3 -c 'import confluent_kafka, fastavro, httpx; from confluent_kafka.schema_registry.avro import AvroSerializer' 2>/dev/null; }
if [ -f "$dir/.complete" ] && check "$dir"; then echo "$dir"; exit 0; fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# --target installs beside the system's packages, never into them (PEP 668 allows it; the
# variable tells pips that ask anyway).
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
  --target "$tmp/site" "confluent-kafka[avro,schemaregistry]==$version" >&2
check "$tmp/site" || { echo "confluent-kafka $version installed but does not import" >&2; exit 1; }
touch "$tmp/site/.complete"
# Tests call this concurrently: publish with a rename (a loser keeps the winner's copy).
if ! mv -T "$tmp/site" "$dir" 2>/dev/null; then [ -f "$dir/.complete" ] || exit 1; fi
echo "$dir"
