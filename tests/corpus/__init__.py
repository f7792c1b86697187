"""The project's own seeded support-mail corpus: realistic customer mail to
the MOXIS service desk (new requests, replies in the quoting styles of real
clients, auto-replies, bounces) with a ground-truth manifest, and a scorer
for a gateway's threading against it.

    python -m tests.corpus.generate --n 2000 --seed 1 --mbox /tmp/c.mbox
    python -m tests.corpus.score --manifest /tmp/c.mbox.manifest.jsonl --map map.tsv

From Python: ``tests.corpus.generate.generate(n, seed)``, ``write_corpus``,
``tests.corpus.score.score``; ``tests.corpus.people.DOMAINS`` lists the
customer domains (one organization each).
"""
