"""Benchmarks and the results page: the BBC News main job (`bbc`), every rival (`rivals`), speed
(`speed`), WNUT-16 (`wnut`) and long documents (`long_documents`), with their tables, plots and
sections of docs/RESULTS.md (`report`). They use only trbert's public API; the library never
imports them (a test checks both)."""
