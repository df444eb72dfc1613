"""rseq-gen: generate rseq registration code that coexists with glibc and
other adopters, and verify what the build produced.

Kept import-light on purpose: scikit-build-core imports this package (the
``cmake.root`` entry point) inside consumers' build environments.
"""

__version__ = "0.1.0"
