/* The shared-library builds of the benchmark programs: bench_cpu.c,
 * bench_counter.c and bench_ops.c compiled -fPIC into a shared library
 * together with the generated module and the floor (their main() renamed
 * bench_solib_main), so that every loop, generated fast path and floor is
 * shared-object code reading the module's hidden words, as in a library
 * that adopts rseq-gen. This program only calls into it. */
int bench_solib_main(int argc, char **argv);

int main(int argc, char **argv)
{
    return bench_solib_main(argc, argv);
}
