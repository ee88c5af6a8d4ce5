"""The AllTick simulator's modules; ``scripts/simulator.py`` is the entry point over them.

That file's docstring describes the command line, the endpoints, the faults, the admin API and
state(), and lists the modules here. The package imports nothing from ``actors``, so that a client
bug and a server bug cannot cancel out.
"""
