"""Benchmarks: the real engine against the built-in simulators, measured honestly.

``python -m bench.run [--quick]`` runs every scenario, prints a table and writes
``bench/results/latest.json`` (``quick.json`` in quick mode). The scenarios live in
``bench.scenarios``; ``bench.harness`` holds what they share (virtual clock, sandbox with
controllable simulator clocks, request accounting, CPU split between engine and
simulators).
"""
