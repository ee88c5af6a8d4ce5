"""The pure core of tickvisor: protocol, subscription and assignment decisions, liveness, backoff,
settings and errors. No module here imports Ray, a socket library, asyncio, ssl or loguru, reads a
clock or writes ``os.environ``; ``tests/test_purity.py`` walks this package and checks that.
The Ray shells in ``actors/`` feed these cores events and carry out what they return.
"""
