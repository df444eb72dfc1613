"""The names a generated module defines, from its prefix: the manifest's
symbol table (rseq_gen.generate) and the verifier's check that two modules
of one process do not export the same prefix's names (rseq_gen.verify)
read this one list."""

from __future__ import annotations

from rseq_gen import operations

#: Functions of every generated module, after ``PREFIX_``.
FUNCTIONS = (
    "register_current_thread", "unregister_current_thread", "owner",
    "node_id_available", "mm_cid_available", "registration_count",
    "registration_errno", "_thread_area_offset", "_current_cpu_slow",
    "_current_cpu_raw_slow", "_current_node_id_slow", "_percpu_counter_add_slow", "_area_slow",
    "_mmcid_index_slow", "_kernel_mm_cid_slow", "_mmcid_counter_add_slow",
    "max_cpus", "max_mm_cids", "pool_create", "pool_alloc", "pool_free",
    "pool_destroy", "pool_copies",
)
#: Pointer-sized variables of every generated module, after ``PREFIX_``.
VARIABLES = ("rseq_area_offset", "rseq_mmcid_area_offset")
#: Pointer-sized thread-local variables, after ``PREFIX_``, of a module whose
#: TLS model is initial-exec: the pointers per thread of the fast paths, one
#: per indexing mode.
THREAD_VARIABLES = tuple(m.area_pointer for m in operations.MODES)


def functions(prefix: str) -> list[str]:
    """Every function a module with this prefix defines (the operations'
    slow paths included)."""
    return [f"{prefix}_{fn}" for fn in FUNCTIONS] + [v.slow(prefix) for v in operations.variants()]


def variables(prefix: str) -> list[str]:
    return [f"{prefix}_{v}" for v in VARIABLES]


def thread_variables(prefix: str) -> list[str]:
    return [f"{prefix}_{v}" for v in THREAD_VARIABLES]


def module_names(prefix: str) -> list[str]:
    """Every function and variable a module with this prefix may define,
    besides the names protocols share by design (__rseq_abi, ...)."""
    return functions(prefix) + variables(prefix) + thread_variables(prefix)
