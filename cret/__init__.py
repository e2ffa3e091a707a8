"""CRET (SIGIR 2022) re-implementation: CCM module and GEES loss (the design it follows: docs/cret.md)."""
