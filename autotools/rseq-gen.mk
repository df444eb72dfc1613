# rseq-gen make rules (GNU make). configure puts them where a Makefile.am
# holds a line with only @rseq_gen_rules@ (RSEQ_GEN_PROG in configure.ac);
# automake never reads them. See docs/autotools.md.
#
# Generation: for each module declared with RSEQ_GEN_MODULE(PREFIX, ...) in
# configure.ac, PREFIX_rseq.h, PREFIX_rseq.c and PREFIX_rseq.manifest.json
# are made in the build directory of the Makefile that needs them, by one run
# of rseq-gen. They are remade when the options change (PREFIX_rseq.options,
# which config.status rewrites only then) and when rseq-gen's templates or
# its generator change (the depfile PREFIX_rseq.d, included below).
#
# Verification (`make rseq-gen-verify`, e.g. from check-local):
#   PREFIX_RSEQ_GEN_VERIFY    files checked against PREFIX's manifest: objects,
#                             archives, shared libraries, programs; a libtool
#                             .la stands for the shared library it names
#   RSEQ_GEN_VERIFY_CLOSURE   programs whose whole process is checked
#                             (`rseq-gen verify --closure`); link them with
#                             -no-install so they find uninstalled libraries
#   RSEQ_GEN_VERIFY_FLAGS     more `rseq-gen verify` options (--min-glibc ...)

# A pattern rule with several targets makes them all with one run.
%_rseq.h %_rseq.c %_rseq.manifest.json: $(top_builddir)/%_rseq.options
	$(AM_V_GEN)$(RSEQ_GEN) generate $($*_RSEQ_GEN_FLAGS) --prefix $* --output-dir . \
	  --manifest $*_rseq.manifest.json --depfile $*_rseq.d --origin $(top_srcdir)/configure.ac

-include $(RSEQ_GEN_MODULES:=_rseq.d)

# The file rseq-gen checks for a make target: the shared library a libtool
# archive names, else the file itself.
rseq_gen_verify_file = $(if $(filter %.la,$(1)),$(dir $(1)).libs/$(shell sed -n "s/^dlname='\(.*\)'$$/\1/p" $(1)),$(1))

rseq_gen_verify_command = $(strip $(RSEQ_GEN) verify $(RSEQ_GEN_VERIFY_FLAGS))

rseq_gen_verify_manifests = $(foreach m,$(RSEQ_GEN_MODULES),$(if $($(m)_RSEQ_GEN_VERIFY),$(m)_rseq.manifest.json))

# Every check runs (one failing does not hide the others); a finding fails the target.
rseq-gen-verify: $(rseq_gen_verify_manifests) $(foreach m,$(RSEQ_GEN_MODULES),$($(m)_RSEQ_GEN_VERIFY)) $(RSEQ_GEN_VERIFY_CLOSURE)
	$(AM_V_at)rseq_gen_failed=0; \
	$(foreach m,$(RSEQ_GEN_MODULES),$(foreach f,$($(m)_RSEQ_GEN_VERIFY), \
	  echo "$(rseq_gen_verify_command) --manifest $(m)_rseq.manifest.json $(call rseq_gen_verify_file,$(f))"; \
	  $(rseq_gen_verify_command) --manifest $(m)_rseq.manifest.json $(call rseq_gen_verify_file,$(f)) || rseq_gen_failed=1;)) \
	$(foreach f,$(RSEQ_GEN_VERIFY_CLOSURE), \
	  echo "$(rseq_gen_verify_command) --closure $(call rseq_gen_verify_file,$(f))"; \
	  $(rseq_gen_verify_command) --closure $(call rseq_gen_verify_file,$(f)) || rseq_gen_failed=1;) \
	test $$rseq_gen_failed = 0

.PHONY: rseq-gen-verify
