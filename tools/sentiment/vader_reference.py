"""VADER's figures on the same rows as `switchboard sentiment eval` (docs/sentiment.md).

Pinned: vaderSentiment==3.3.2. Labels cut the compound score at +-0.35, as Switchboard does.

    python3 -m venv /tmp/vader && /tmp/vader/bin/pip install vaderSentiment==3.3.2
    /tmp/vader/bin/python tools/sentiment/vader_reference.py ../shared/data
"""
import sys
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
a=SentimentIntensityAnalyzer()
def lab(s): return 'negative' if s< -0.35 else ('positive' if s>0.35 else 'neutral')
def f1(rows):
    C=['negative','neutral','positive']; conf={(g,p):0 for g in C for p in C}
    for g,t in rows: conf[(g,lab(a.polarity_scores(t)['compound']))]+=1
    fs=[]; rec={}
    for c in C:
        act=sum(conf[(c,p)] for p in C)
        if act==0: continue
        pred=sum(conf[(g,c)] for g in C); tp=conf[(c,c)]
        P=tp/pred if pred else 0; R=tp/act; rec[c]=R
        fs.append(2*P*R/(P+R) if P+R else 0)
    neg=sum(conf[(g,'negative')] for g in C)/len(rows)
    return sum(fs)/len(fs), rec.get('negative',0), neg
base=sys.argv[1] if len(sys.argv) > 1 else '../shared/data'
for d,f in [('dev','vader_icwsm_tweets'),('dev','vader_icwsm_amazon'),('dev','uci_amazon'),('dev','uci_imdb'),('dev','uci_yelp'),('train','sanders_brand_tweets'),('train','apple_dfe_tweets'),('train','complaints_neg'),('train','complaints_noncomplaint_as_neu')]:
    rows=[l.rstrip('\n').split('\t',1) for l in open(f'{base}/sentiment-{d}/{f}.tsv',encoding='utf-8') if '\t' in l]
    m,r,n=f1(rows); out=f"{f:36} all: F1 {m:.3f} negrec {r:.3f} called-neg {n:.3f}"
    if d=='dev':
        m2,r2,_=f1(rows[1::2]); out+=f" | held-out F1 {m2:.3f} negrec {r2:.3f}"
    print(out)
