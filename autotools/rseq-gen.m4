# rseq-gen.m4: autoconf macros for rseq-gen                  -*- Autoconf -*-
#
# Installed with rseq-gen in the directory `rseq-gen --aclocaldir` prints,
# beside rseq-gen.mk (the make rules RSEQ_GEN_PROG puts into Makefiles).
# Point aclocal at it once and let it copy the file into the project:
#
#   ACLOCAL_PATH=$(rseq-gen --aclocaldir) autoreconf -fi
#
# (with ACLOCAL_AMFLAGS = -I m4 --install in Makefile.am and
# AC_CONFIG_MACRO_DIR([m4]) in configure.ac). See docs/autotools.md.
#
# serial 1

# RSEQ_GEN_PROG([MIN-VERSION], [ACTION-IF-FOUND], [ACTION-IF-NOT-FOUND])
# ---------------------------------------------------------------------
# Finds rseq-gen: the RSEQ_GEN variable if the user set it, else rseq-gen on
# PATH, else the executable named by the rseq_gen variable of pkg-config's
# rseq-gen.pc (PKG_CONFIG_PATH=$(rseq-gen --pkgconfigdir)). Checks that its
# version is MIN-VERSION or newer. Substitutes RSEQ_GEN, RSEQ_GEN_VERSION,
# RSEQ_GEN_HOST_ARCH (rseq-gen's name for the host CPU, so cross builds
# generate code for the target) and the file rseq_gen_rules: a Makefile.am
# line holding only @rseq_gen_rules@ gets the generation and verification
# rules (GNU make).
#
# Without ACTION-IF-NOT-FOUND, configure stops with an error.
AC_DEFUN([RSEQ_GEN_PROG],
[AC_REQUIRE([AC_CANONICAL_HOST])dnl
AC_ARG_VAR([RSEQ_GEN], [the rseq-gen command (default: rseq-gen on PATH, else the one rseq-gen.pc names)])dnl
# GNU CPU names where rseq-gen's differ; rseq-gen checks the result.
AS_CASE([$host_cpu],
  [i?86], [RSEQ_GEN_HOST_ARCH=i386],
  [arm*], [RSEQ_GEN_HOST_ARCH=arm],
  [powerpc64le], [RSEQ_GEN_HOST_ARCH=ppc64le],
  [powerpc64], [RSEQ_GEN_HOST_ARCH=ppc64],
  [powerpc], [RSEQ_GEN_HOST_ARCH=ppc32],
  [RSEQ_GEN_HOST_ARCH=$host_cpu])
AC_SUBST([RSEQ_GEN_HOST_ARCH])
rseq_gen_min_version="m4_default([$1], [0])"
rseq_gen_problem=
AC_PATH_PROG([RSEQ_GEN], [rseq-gen])
AS_IF([test -z "$RSEQ_GEN"],
  [AC_MSG_CHECKING([for rseq-gen through pkg-config])
   rseq_gen_from_pc=`${PKG_CONFIG:-pkg-config} --variable=rseq_gen rseq-gen 2>/dev/null`
   AS_IF([test -n "$rseq_gen_from_pc" && test -x "$rseq_gen_from_pc"],
     [RSEQ_GEN=$rseq_gen_from_pc
      AC_MSG_RESULT([$RSEQ_GEN])],
     [AC_MSG_RESULT([no])])])
AS_IF([test -z "$RSEQ_GEN"],
  [rseq_gen_problem="rseq-gen not found: install it (pip install rseq-gen), put it on PATH, set RSEQ_GEN=/path/to/rseq-gen, or PKG_CONFIG_PATH=\$(rseq-gen --pkgconfigdir)"],
  [AC_MSG_CHECKING([the version of $RSEQ_GEN])
   RSEQ_GEN_VERSION=`$RSEQ_GEN --version 2>/dev/null | sed -n 's/^rseq-gen  *//p'`
   AS_IF([test -z "$RSEQ_GEN_VERSION"],
     [AC_MSG_RESULT([unknown])
      rseq_gen_problem="'$RSEQ_GEN --version' did not answer 'rseq-gen X.Y.Z': set RSEQ_GEN to a working rseq-gen"],
     [AC_MSG_RESULT([$RSEQ_GEN_VERSION])
      AS_VERSION_COMPARE([$RSEQ_GEN_VERSION], [$rseq_gen_min_version],
        [rseq_gen_problem="$RSEQ_GEN is version $RSEQ_GEN_VERSION; this package needs rseq-gen $rseq_gen_min_version or newer (pip install --upgrade rseq-gen, or set RSEQ_GEN)"])])])
AS_IF([test -z "$rseq_gen_problem"],
  [rseq_gen_rules=`$RSEQ_GEN --aclocaldir 2>/dev/null`/rseq-gen.mk
   AS_IF([test -f "$rseq_gen_rules"], [],
     [rseq_gen_problem="$RSEQ_GEN has no make rules ($rseq_gen_rules): is it an installed rseq-gen (pip install), not a source tree?"])])
AC_SUBST([RSEQ_GEN_VERSION])
AC_SUBST_FILE([rseq_gen_rules])
AC_SUBST([RSEQ_GEN_MODULES])
AS_IF([test -z "$rseq_gen_problem"],
  [m4_default([$2], [:])],
  [rseq_gen_rules=/dev/null
   m4_default([$3], [AC_MSG_ERROR([$rseq_gen_problem])])])
])# RSEQ_GEN_PROG


# RSEQ_GEN_MODULE(PREFIX, [GENERATE-OPTIONS])
# -------------------------------------------
# Declares a generated module: PREFIX_rseq.h, PREFIX_rseq.c and
# PREFIX_rseq.manifest.json, made by `rseq-gen generate --arch
# $RSEQ_GEN_HOST_ARCH GENERATE-OPTIONS --prefix PREFIX` in the build
# directory of each Makefile that names them (an --arch in GENERATE-OPTIONS
# wins over the host's).
# GENERATE-OPTIONS may use shell variables (an AC_ARG_WITH value); configure
# checks them with `rseq-gen generate --dry-run` and stops on a bad one.
# Substitutes PREFIX_RSEQ_GEN_FLAGS and adds PREFIX to RSEQ_GEN_MODULES.
# config.status writes PREFIX_rseq.options in the top build directory,
# rewritten only when the options change: the outputs depend on it.
AC_DEFUN([RSEQ_GEN_MODULE],
[AC_REQUIRE([RSEQ_GEN_PROG])dnl
m4_if(m4_bregexp([$1], [^[A-Za-z_][A-Za-z0-9_]*$]), [-1],
  [m4_fatal([RSEQ_GEN_MODULE: the prefix '$1' is not a C identifier])])dnl
AS_IF([test -n "$rseq_gen_problem"], [],
  [$1_RSEQ_GEN_FLAGS="--arch $RSEQ_GEN_HOST_ARCH $2"
   AC_MSG_CHECKING([the rseq-gen options of $1])
   AS_IF([rseq_gen_out=`$RSEQ_GEN generate $$1_RSEQ_GEN_FLAGS --prefix $1 --output-dir . --dry-run 2>&1`],
     [AC_MSG_RESULT([$$1_RSEQ_GEN_FLAGS])],
     [AC_MSG_RESULT([rejected])
      AC_MSG_ERROR([$rseq_gen_out])])
   RSEQ_GEN_MODULES="${RSEQ_GEN_MODULES:+$RSEQ_GEN_MODULES }$1"])
AC_SUBST([$1_RSEQ_GEN_FLAGS])
AC_CONFIG_COMMANDS([$1_rseq.options],
  [rseq_gen_stamp=$1_rseq.options
   printf '%s\n' "# rseq-gen options of $1 (rewritten only when they change)" "$rseq_gen_command generate $rseq_gen_flags" >"$rseq_gen_stamp.tmp"
   if cmp -s "$rseq_gen_stamp.tmp" "$rseq_gen_stamp"; then rm -f "$rseq_gen_stamp.tmp"; else mv -f "$rseq_gen_stamp.tmp" "$rseq_gen_stamp"; fi],
  [rseq_gen_command="$RSEQ_GEN"
   rseq_gen_flags="$$1_RSEQ_GEN_FLAGS"])
])# RSEQ_GEN_MODULE
