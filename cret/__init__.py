"""CRET (SIGIR 2022) re-implementation: CCM module and GEES loss (see ../shared/docs/cret-spec.md)."""
