"""What the tests share that is not a test or a fixture: the toolchain table
and its preflight (toolchains), the glibc releases fetched as sysroots and
loaders (glibcs), the Linux 7.x guest harness (guest) and the other kernel
lines booted under qemu-system (kernels), and rseq-gen installed from its
wheel for the build-system tests (installed)."""
