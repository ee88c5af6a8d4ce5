"""The benchmarks and the soak: tickvisor measured and stressed against the simulator on 127.0.0.1.

Commands (their CLIs live in the modules named; the first three have shims in ``scripts/``)::

    python scripts/bench.py --quick            # cli: tickvisor beside its baselines, table + BENCH line
    python scripts/bench_scale.py --smoke      # scale: start-up, throughput, memory by codes x connections
    python scripts/soak.py --minutes 0.5       # soak: seeded random faults, checked tick by tick
    python -m scripts.bench.channels --quick   # channels: the Ray-free data-path pipeline and its candidates

The modules, by what they need:

* no Ray: ``modes`` (the one table of run sizes), ``config`` (the one config builder, shared with
  tests/conftest.py), ``wait`` (the one polling wait), ``harness`` (the simulator process, the baseline
  client processes, /proc accounting), ``count`` (per-tick counting), ``clients`` (the baselines),
  ``channels`` (the pipeline), ``pyspy`` (profiles), ``report`` (the table and the BENCH line),
  ``plots`` (the PNGs of ``--plots``, matplotlib imported only to draw them);
* Ray: ``job`` (tickvisor's job and the run's Ray), ``phases`` (what ``cli`` measures), ``naive``,
  ``churn``, ``strategy`` (the benchmark's strategy), ``scale``, ``soak`` and ``soak_strategy``.

Importing this package imports nothing: Ray workers load ``scripts.bench.strategy`` by name.
"""
