"""The verifier's rules, as one data table.

Each rule has a stable ID (never reused), a short name, a default severity,
a message template and a fix. ``docs/rules.md`` is generated from this table:
``python -m rseq_gen.rules docs/rules.md`` rewrites it, ``--check`` fails
when it is stale (a test runs that).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ("error", "warning", "note")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    category: str
    summary: str
    message: str  # str.format template; the checks fill the fields
    fix: str
    #: When a finding is raised above the default severity (None: never).
    raised: str | None = None
    #: For ``rseq-gen explain``: a short title, why the problem matters at
    #: run time, and an example of what is reported (and what is not).
    title: str = ""
    why: str = ""
    example: str = ""


RULE_LIST = (
    # ---- the rseq area and the shared coordination symbols ----------------
    Rule("RSEQ101", "abi-not-tls", "error", "Symbols",
         "`__rseq_abi` is defined but is not a thread-local (STT_TLS) symbol.",
         "__rseq_abi is {type}, not STT_TLS: every thread would share one area",
         "Declare the area `__thread` (the generated code does); do not define `__rseq_abi` as a plain object.",
         title="`__rseq_abi` is not thread-local",
         why="The kernel writes the current CPU into the area of each registered thread; one area shared by all threads gives every thread another thread's CPU, and registering it from two threads fails.",
         example="`struct rseq __rseq_abi;` (a plain global) is reported; `__thread struct rseq __rseq_abi __attribute__((aligned(32)));` is not."),
    Rule("RSEQ102", "abi-too-small", "error", "Symbols",
         "`__rseq_abi` is smaller than the 32 bytes of the original `struct rseq`.",
         "__rseq_abi is {size} bytes, the kernel needs at least 32",
         "Define `__rseq_abi` with the full 32-byte `struct rseq` layout.",
         title="`__rseq_abi` is smaller than `struct rseq`",
         why="The kernel reads and writes 32 bytes at the registered address: a smaller object lets it overwrite whatever the linker placed next to it.",
         example="A 20-byte `__rseq_abi` copied from an old header is reported; the 32-byte `struct rseq` layout is not."),
    Rule("RSEQ103", "abi-misaligned", "error", "Symbols",
         "An rseq area is not aligned to 32 bytes inside the TLS block (the kernel refuses a misaligned area with EINVAL).",
         "{symbol} sits at TLS offset {offset:#x} (section alignment {align}), not a multiple of 32",
         "Give the area `__attribute__((aligned(32)))` and do not place it in a packed structure.",
         title="An rseq area is not 32-byte aligned",
         why="The kernel refuses a registration whose area is not aligned to 32 bytes (EINVAL), so the module silently runs on its fallbacks.",
         example="`__thread char area[32];` without `__attribute__((aligned(32)))` can land at TLS offset 0x10 and is reported."),
    Rule("RSEQ104", "tls-segment-align", "error", "Symbols",
         "The PT_TLS segment of a file that defines an rseq area is aligned to less than 32 bytes, so no offset inside it is 32-aligned at run time.",
         "PT_TLS p_align is {align}, below 32, while {symbol} lives in it",
         "Align the area to 32 bytes; the linker then raises the TLS segment alignment.",
         title="The TLS segment is aligned below 32",
         why="The thread pointer of each thread is only as aligned as the PT_TLS segment asks; below 32 no area inside it is 32-aligned at run time, so every registration fails with EINVAL.",
         example="A hand-written linker script that forces the `.tbss` alignment to 8 is reported (PT_TLS p_align 8)."),
    Rule("RSEQ105", "abi-not-exported", "error", "Symbols",
         "The protocol shares `__rseq_abi` between modules, but this file's definition is local or not default visibility, so it no longer interposes.",
         "__rseq_abi is {bind}/{visibility}; protocol {protocol} needs it GLOBAL or WEAK with default visibility",
         "List `__rseq_abi` under `global:` in your version script (the manifest's `version_script_globals` "
         "lists what to keep); `-fvisibility=hidden` alone does not hide it (the generated code marks it "
         "`visibility(\"default\")`).",
         title="The shared `__rseq_abi` is hidden",
         why="Shared-area protocols meet on one interposable `__rseq_abi`; a hidden or local copy is a second area, and whichever module registers second in a thread is refused with EINVAL.",
         example="A version script whose `local: *;` catches `__rseq_abi` is reported; listing `__rseq_abi` under `global:` fixes it."),
    Rule("RSEQ106", "private-area-exported", "error", "Symbols",
         "The protocol keeps its area private, but the area is exported, so another module could bind to it.",
         "{symbol} is exported ({bind}/{visibility}) but protocol {protocol} keeps its area private",
         "Keep the private area `static` (the generated code does) or hide it with a version script.",
         title="A private rseq area is exported",
         why="Another module could bind to an exported area and register it a second time or read the wrong thread's state; the `own` protocol relies on nobody else seeing its area.",
         example="An `own` module whose private area was made global by a version script is reported."),
    Rule("RSEQ107", "refcount-layout", "error", "Symbols",
         "`__rseq_refcount` must be a 4-byte thread-local (STT_TLS) counter.",
         "__rseq_refcount is {type}, {size} bytes; expected STT_TLS, 4 bytes",
         "Define `__thread unsigned int __rseq_refcount` (weak, default visibility).",
         title="`__rseq_refcount` has the wrong layout",
         why="Modules of the `refcount` and `compat` protocols count registrations through this 4-byte thread-local word; a different size or a non-TLS object breaks the count and a thread is unregistered while others still use the area.",
         example="`unsigned long __rseq_refcount;` (8 bytes, not thread-local) is reported; `__thread unsigned int __rseq_refcount;` is not."),
    Rule("RSEQ108", "handled-layout", "error", "Symbols",
         "`__rseq_handled` must be a 4-byte data object.",
         "__rseq_handled is {type}, {size} bytes; expected a 4-byte object",
         "Define `int __rseq_handled` (weak, default visibility, not thread-local).",
         title="`__rseq_handled` has the wrong layout",
         why="Modules of the `handled` protocol agree through this 4-byte flag who registers threads; a different size or a thread-local copy lets two modules both claim it.",
         example="`__thread int __rseq_handled;` is reported; `int __rseq_handled __attribute__((weak));` is not."),
    Rule("RSEQ109", "executable-symbol-not-dynamic", "warning", "Symbols",
         "A dynamically linked executable defines a shared coordination symbol but does not export it (.dynsym): libraries dlopen'd later bind to their own copy instead of the executable's.",
         "{symbol} is defined but missing from .dynsym; protocol {protocol} shares it with modules loaded later",
         "Link the executable with `-Wl,--export-dynamic-symbol=<name>` for each shared symbol (rseq_gen.protocols: executable_link_flags).",
         title="An executable does not export a shared rseq symbol",
         why="An executable exports only the symbols a library linked at build time refers to; a plugin dlopen'd later then binds to its own `__rseq_abi`, a second area whose registration is refused.",
         example="`gcc -o app main.c app_rseq.c` with the `compat` protocol is reported; add `-Wl,--export-dynamic-symbol=__rseq_abi` (the manifest's `executable_link_flags`)."),
    Rule("RSEQ110", "abi-shorter-than-registration", "error", "Symbols",
         "An rseq area is smaller, or less aligned, than the longest registration a module using it may make (`--registration extended` or `auto`: 64 bytes aligned 64 on 7.x): the kernel would be given bytes that belong to something else, or refuse the registration.",
         "{symbol} is {size} bytes at an offset aligned to {align}, but {who} may register {length} bytes on it (needs {length} bytes aligned to {length})",
         "Generate every module sharing `__rseq_abi` with the same `--registration`, so the definition that wins is as large as every registration; or use `--registration legacy` everywhere.",
         title="`__rseq_abi` is shorter than a registration made on it",
         why="The kernel is given the registration's length: an area shorter than that lets it write past the end, and an area aligned below the length is refused.",
         example="A module generated with `--registration extended` (64 bytes) binding to another module's 32-byte `__rseq_abi` is reported."),
    # ---- glibc ABI ------------------------------------------------------
    Rule("RSEQ201", "glibc-strong-reference", "error", "glibc ABI",
         "A strong reference to `__rseq_offset`, `__rseq_size` or `__rseq_flags` needs glibc 2.35: the file does not load on the older glibc that `--min-glibc` asks for.",
         "{symbol} is a strong reference{version_text}; --min-glibc {min_glibc} is older than 2.35",
         "Declare the glibc symbols `extern ... __attribute__((weak))` and test `&__rseq_size != NULL` (the generated code does).",
         title="A strong reference to glibc 2.35 rseq symbols",
         why="The dynamic loader of an older glibc refuses to load a file whose strong references it cannot resolve, so the program does not start there.",
         example="`extern ptrdiff_t __rseq_offset;` used in a library verified with `--min-glibc 2.31` is reported; declaring it `__attribute__((weak))` is not."),
    Rule("RSEQ202", "glibc-version-node", "note", "glibc ABI",
         "Which symbol version each glibc rseq symbol reference needs, and from which file (ld.so included).",
         "{symbol} {how} {version} {where}",
         "Nothing to fix: informational.",
         title="Which glibc symbol versions the rseq references need",
         why="Informational: it shows which file needs which glibc version for the rseq symbols, which decides the oldest glibc the program loads on.",
         example="`__rseq_offset weak reference GLIBC_2.35 from libfoo.so`: shown with `--notes` or `-v`."),
    # ---- TLS model and module lifetime ------------------------------------
    Rule("RSEQ301", "initial-exec-dlopen", "error", "TLS model",
         "A library meant to be dlopen'd reaches its rseq area with initial-exec TLS (DF_STATIC_TLS or IE relocations): dlopen fails once the static TLS surplus is used up.",
         "{what}, but the library is to be dlopen'd ({why})",
         "Generate with `--dlopen-safe` (global-dynamic TLS) or `--tls-model global-dynamic`.",
         title="A dlopen'd library uses initial-exec TLS",
         why="Initial-exec TLS of a dlopen'd library must fit into the small static TLS surplus glibc reserves at start-up; once it is used up, dlopen fails with \"cannot allocate memory in static TLS block\".",
         example="A plugin generated without `--dlopen-safe` and verified with `--dlopen` is reported; regenerate it with `--dlopen-safe`."),
    Rule("RSEQ302", "owner-without-nodelete", "warning", "TLS model",
         "A shared library that registers areas in its own TLS is not marked DF_1_NODELETE: dlclose would free TLS the kernel keeps writing into.",
         "{what}, and DT_FLAGS_1 lacks NODELETE: {how}",
         "Link the library with `-Wl,-z,nodelete`.",
         raised="an error where the library is to be dlopen'd (`--dlopen`, `--plugin`, the manifest's or the note's dlopen_safe); at most a warning for a library a closure loads as DT_NEEDED",
         title="A library that registers areas can be unloaded",
         why="The kernel keeps writing into a registered area until the thread exits; after dlclose frees that TLS, it writes into memory that now belongs to something else.",
         example="A `compat` shared library linked without `-Wl,-z,nodelete` is reported; the CMake functions add the flag for you."),
    # ---- critical sections ----------------------------------------------
    Rule("RSEQ401", "cs-section-layout", "error", "Critical sections",
         "`__rseq_cs` must be aligned to 32 and hold whole 32-byte descriptors.",
         "{section} {problem}",
         "Emit descriptors with `.balign 32` and five fields (u32 version, u32 flags, u64 start_ip, u64 post_commit_offset, u64 abort_ip).",
         title="`__rseq_cs` holds partial or misaligned descriptors",
         why="The kernel reads a 32-byte, 32-aligned descriptor at the address in `rseq_cs`; a misaligned or truncated one makes it kill the thread with SIGSEGV at the next preemption.",
         example="Hand-written asm that emits a descriptor without `.balign 32` is reported."),
    Rule("RSEQ402", "cs-version", "error", "Critical sections",
         "A critical-section descriptor has a non-zero version (the kernel only knows version 0).",
         "descriptor {index} has version {value}",
         "Set `version` to 0.",
         title="A critical-section descriptor has a non-zero version",
         why="The kernel kills a thread whose current descriptor has a version it does not know (SIGSEGV).",
         example="`.long 1, 0` as the first two words of a descriptor is reported; `.long 0, 0` is not."),
    Rule("RSEQ403", "cs-flags", "error", "Critical sections",
         "A critical-section descriptor sets flags; the NO_RESTART flags are deprecated and get SIGSEGV on kernels >= 6.0.",
         "descriptor {index} has flags {value:#x}",
         "Set `flags` to 0.",
         title="A critical-section descriptor sets flags",
         why="The NO_RESTART flags are deprecated: kernels 6.0 and later kill the thread (SIGSEGV) when a descriptor sets them.",
         example="A descriptor copied from old code with `RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT` is reported."),
    Rule("RSEQ404", "cs-range", "error", "Critical sections",
         "start_ip and start_ip + post_commit_offset of a descriptor must lie in one executable section.",
         "descriptor {index}: {problem}",
         "Point start_ip at the first instruction and post_commit_offset at the commit end, in the same code section.",
         title="A critical section's range leaves its code section",
         why="The kernel restarts a sequence only while the instruction pointer is inside [start_ip, start_ip + post_commit_offset); a range that is wrong never restarts, or restarts code that is not the sequence.",
         example="A descriptor whose post_commit_offset was computed against a label in another section is reported."),
    Rule("RSEQ405", "cs-abort-ip", "error", "Critical sections",
         "abort_ip must be in an executable section and outside [start_ip, start_ip + post_commit_offset).",
         "descriptor {index}: {problem}",
         "Put the abort handler outside the critical section (the generated code uses `__rseq_failure`).",
         title="The abort handler is inside its critical section or not code",
         why="On preemption the kernel jumps to abort_ip; inside the range that loops forever, outside executable code it crashes.",
         example="A descriptor whose abort label was placed before the commit instruction is reported."),
    Rule("RSEQ406", "cs-signature", "error", "Critical sections",
         "The 4 bytes before each abort_ip must be RSEQ_SIG for the ELF machine and byte order; otherwise the kernel kills the thread on abort.",
         "descriptor {index}: bytes before abort_ip {abort} read {found}, expected RSEQ_SIG {expected:#010x} ({arch}, {endian} endian)",
         "Emit the signature right before the abort label with this architecture's RSEQ_SIG.",
         title="The signature before an abort handler is wrong",
         why="The kernel checks the 4 bytes before abort_ip against RSEQ_SIG and kills the thread (SIGSEGV) when they differ: the first preemption inside the sequence is fatal.",
         example="An x86_64 abort label preceded by `.long 0` instead of `.long 0x53053053` is reported."),
    Rule("RSEQ407", "cs-ptr-array", "error", "Critical sections",
         "`__rseq_cs_ptr_array` must hold one 8-byte pointer to each descriptor and nothing else.",
         "{problem}",
         "Emit one pointer per descriptor (`.quad` on 64-bit, `.long x, 0` on 32-bit) into `__rseq_cs_ptr_array`.",
         title="`__rseq_cs_ptr_array` is malformed",
         why="Debuggers and checkers (and librseq's tooling) find the critical sections through this array; a wrong entry hides a sequence from them.",
         example="A 32-bit build that emits `.long desc` (4 bytes) per entry instead of `.long desc, 0` is reported."),
    Rule("RSEQ408", "cs-exit-point", "warning", "Critical sections",
         "`__rseq_exit_point_array` entries must start at a descriptor's start_ip and exit to code.",
         "{problem}",
         "Emit (start_ip, exit_ip) pairs only for the exits of a declared critical section.",
         title="An exit point is outside the declared sequences",
         why="Each (start_ip, exit_ip) pair of `__rseq_exit_point_array` tells tools where a sequence may leave early; a pair that matches no sequence points them at the wrong code.",
         example="An exit pair whose start_ip is no descriptor's start_ip is reported."),
    # ---- protocols --------------------------------------------------------
    Rule("RSEQ501", "two-private-owners", "error", "Protocols",
         "Two modules each register their own private area: the second registration in a thread fails with EINVAL.",
         "{a} and {b} both register a private area",
         "Use one protocol with a shared area (e.g. compat) for every module, or let one module own registration.",
         title="Two modules each register a private area",
         why="The kernel keeps one registration per thread: the second module's registration is refused (EINVAL) and it runs on its slower fallbacks everywhere glibc does not register.",
         example="An executable and a library both generated with `--protocol own`, verified together, are reported."),
    Rule("RSEQ502", "private-beside-shared", "error", "Protocols",
         "A module with a private area sits beside a module that registers the shared `__rseq_abi`: whichever registers second fails with EINVAL.",
         "{a} registers a private area while {b} registers the shared __rseq_abi",
         "Generate every module with the same shared-area protocol (compat is the default).",
         title="A private area beside the shared `__rseq_abi`",
         why="Whichever of the two registers a thread second is refused (EINVAL): one of them never gets a fast path without glibc's registration.",
         example="An `own` library and a `compat` library in one closure are reported; generate both with `compat`."),
    Rule("RSEQ503", "glibc-mix", "warning", "Protocols",
         "Shared-area protocols that use glibc's registration are mixed with ones that ignore it: under glibc >= 2.35 the unaware ones fail to register.",
         "{a} uses glibc's area when present, {b} does not",
         "Use a glibc-aware protocol (compat) for every module.",
         title="glibc-aware and glibc-unaware protocols are mixed",
         why="Under glibc 2.35 or later every thread is registered by glibc; protocols that ignore glibc's area (`cpu-id`, `refcount`, `handled`) are then refused and lose their fast path.",
         example="A `compat` library beside a `refcount` library is reported."),
    Rule("RSEQ504", "protocol-unknown", "warning", "Protocols",
         "An rseq-gen note names a protocol this verifier does not know, or cannot be parsed.",
         "{problem}",
         "Verify with the rseq-gen version that generated the code, or regenerate.",
         title="An rseq-gen note this verifier does not understand",
         why="The protocol of that module cannot be checked against the others, so conflicts with it may go unreported.",
         example="A library built by a newer rseq-gen with a protocol this version lacks is reported."),
    Rule("RSEQ505", "protocol-mismatch", "error", "Protocols",
         "The protocol asked for (`--protocol` or the manifest) is not the one the file's rseq-gen note records.",
         "note says protocol {found}, expected {expected}",
         "Regenerate the code with the expected protocol, or fix `--protocol`.",
         title="The protocol differs from the one expected",
         why="The build asked for one protocol but the file carries code of another, usually a stale generated file, so the module does not coexist as planned.",
         example="`rseq-gen verify --protocol compat libfoo.so` on a library built from code generated with `--protocol own` is reported."),
    Rule("RSEQ506", "registration-mismatch", "error", "Protocols",
         "Modules sharing `__rseq_abi` were generated with different `--registration` modes: a registration must be unregistered with its own length, so when one module registers and another drops the last reference, the kernel refuses (EINVAL) and the registration stays; a longer registration also does not fit a shorter area.",
         "{a} registers up to {la} bytes (--registration {ma}), {b} up to {lb} (--registration {mb})",
         "Generate every module that shares `__rseq_abi` with the same `--registration`.",
         title="Modules sharing `__rseq_abi` use different registration lengths",
         why="The kernel unregisters only with the registration's own length: when the module that drops the last reference is not the one that registered, unregistration fails and the area stays registered.",
         example="A library generated with `--registration extended` beside one generated with the default `legacy` is reported."),
    # ---- manifest -------------------------------------------------------
    Rule("RSEQ601", "manifest-symbol-missing", "error", "Manifest",
         "A symbol the manifest promises is not in the file.",
         "{symbol} ({role}) promised by the manifest is missing from {table}",
         "Compile and link the generated source into this file; check `--gc-sections`, version scripts and strip options.",
         title="A symbol the manifest promises is missing",
         why="The file was not built from the generated source the manifest describes (or the linker dropped it), so its registration code is absent or out of date.",
         example="Linking with `-Wl,--gc-sections` and a version script that drops `mylib_register_current_thread` is reported."),
    Rule("RSEQ602", "manifest-symbol-mismatch", "error", "Manifest",
         "A symbol differs from the manifest in type, size, alignment, binding or visibility.",
         "{symbol}: {field} is {found}, manifest says {expected}",
         "Keep what the manifest's version_script_globals lists global in your version script "
         "(the protocol's shared names, or every generated name with --visibility default); "
         "-fvisibility=hidden is fine (the generated declarations say their own visibility); "
         "do not build the generated source with -fcommon.",
         title="A symbol differs from the manifest",
         why="The generated declarations fix each symbol's type, size, binding and visibility because other modules rely on them; an override breaks the protocol.",
         example="A version script whose `global:` list leaves out `__rseq_refcount` is reported: the linked file has it local, the manifest says global."),
    Rule("RSEQ603", "manifest-note-missing", "error", "Manifest",
         "The file does not carry the rseq-gen note the manifest describes, so it was not built from that generated code.",
         "no rseq-gen note with {desc}",
         "Compile the generated source into this file, and keep `.note.rseq-gen` (do not strip it).",
         title="The rseq-gen note is missing",
         why="Without the note the verifier and other modules cannot tell which protocol the file uses: the file was not built from this generated code, or was stripped.",
         example="`strip --remove-section=.note.rseq-gen libfoo.so` is reported."),
    Rule("RSEQ604", "manifest-operation-without-sequence", "error", "Manifest",
         "A per-CPU operation the manifest lists has no critical section in the file: neither its slow path nor an out-of-line copy of its sequence holds a `__rseq_cs` descriptor's start.",
         "{operation}: no critical section starts inside {symbol} or its sequence function",
         "Compile the generated source unmodified, with the architecture it was generated for; keep `__rseq_cs` and `__rseq_cs_ptr_array` in the link.",
         title="A per-CPU operation has no critical section",
         why="Without its sequence the operation always takes the slow path, or the generated code was altered so the kernel no longer restarts it.",
         example="Compiling the generated source for a different `--arch` than it was generated for is reported."),
    # ---- process closure --------------------------------------------------
    Rule("RSEQ701", "closure-unresolved", "warning", "Closure",
         "A DT_NEEDED library could not be found the way the dynamic loader searches, so the process closure is incomplete.",
         "{needed} (needed by {by}) not found in {searched}",
         "Install the library, or set RPATH/RUNPATH or LD_LIBRARY_PATH as at run time.",
         title="A needed library was not found",
         why="The closure is incomplete, so registration ownership and conflicts are predicted without that library.",
         example="`rseq-gen verify --closure ./app` where `libfoo.so` is only found through `LD_LIBRARY_PATH` at run time is reported."),
    Rule("RSEQ702", "registration-owner", "note", "Closure",
         "Who registers rseq for the threads of this process at run time, in each environment the process can meet (the closure's `prediction` in the JSON report has every detail).",
         "registration owner per environment: {summary}",
         "Nothing to fix: informational.",
         title="Who registers each thread, per environment",
         why="Informational: the prediction of which module owns each thread's registration, in every environment the process can meet.",
         example="`registration owner per environment: glibc >= 2.35 registering: glibc/glibc; ...`: shown with `--notes` or `-v`."),
    # ---- coexistence with other adopters (rseq_gen.adopters) --------------
    Rule("RSEQ703", "peer-broken", "error", "Coexistence",
         "An rseq adopter that passes its own checks alone (librseq, the kernel selftests, tcmalloc) fails beside this process's other modules: its registration is refused (the kernel allows one area per thread) or it aborts.",
         "{peer} ({adopter}) {state} on the {threads}: {where}; the thread's registration belongs to {by}; alone it would be {alone}",
         "Let the peer see the area first: load it at start-up (DT_NEEDED or LD_PRELOAD) rather than with dlopen, so rseq-gen modules find it before they register; or keep glibc's registration on, so every module uses glibc's area; or generate the modules with the `glibc` protocol, which never registers.",
         title="Another rseq adopter breaks beside this process",
         why="The kernel keeps one registration per thread: a peer such as librseq or tcmalloc that registers after an rseq-gen module is refused, or aborts the process.",
         example="librseq dlopen'd after an `own` module registered threads with glibc's registration off is reported."),
    Rule("RSEQ704", "rseq-abi-shadowed", "error", "Coexistence",
         "tcmalloc's `__rseq_abi` is shadowed by an earlier definition in symbol lookup order: once it registers, its layout check (its slabs pointer right before its own `__rseq_abi`) aborts the process.",
         "{peer} ({adopter}) aborts: {where}; its references to __rseq_abi bind to {by}, which comes first in symbol lookup order",
         "Put the tcmalloc module first among the `__rseq_abi` definers (link it into the executable or before the other libraries); shared-area rseq-gen modules then bind to its `__rseq_abi` and share its registration.",
         title="tcmalloc's `__rseq_abi` is shadowed",
         why="tcmalloc checks that its slabs pointer sits right before the `__rseq_abi` it binds to; bound to another module's definition the check fails and it aborts the process.",
         example="An executable linking a `compat` library before libtcmalloc.so is reported; link tcmalloc first."),
    Rule("RSEQ705", "peer-slow-under-glibc", "warning", "Coexistence",
         "A peer that never uses glibc's registration (tcmalloc) is refused while glibc >= 2.35 registers every thread, so it runs in slow mode, whatever else is in the process.",
         "{peer} ({adopter}) runs in slow mode under {env}: its own registration is refused beside glibc's",
         "Run the program with `GLIBC_TUNABLES=glibc.pthread.rseq=0` (compat modules then share the peer's `__rseq_abi`), or accept the slow mode.",
         title="tcmalloc runs in slow mode under glibc's registration",
         why="tcmalloc never uses glibc's area, so while glibc registers every thread its own registration is refused and its per-CPU caches are off.",
         example="Any program with tcmalloc on glibc 2.35 or later is reported, with or without rseq-gen code."),
    Rule("RSEQ706", "cpu-id-start-overlay", "warning", "Coexistence",
         "tcmalloc keeps a pointer over `__rseq_abi.cpu_id_start` and relies on the kernel rewriting that field after every preemption: kernels 6.19 and 7.0 without the RSEQ legacy-mode fix do not, and a registration longer than 32 bytes (v2 mode) kills a process that writes the field.",
         "{peer} ({adopter}) runs its per-CPU fast path ({where}) with its slabs pointer over cpu_id_start: broken on kernels >= 6.19 that skip the rewrite, killed under a v2 (> 32-byte) registration of that area",
         "Run on a kernel before 6.19 or one with the legacy-mode fix (32-byte registrations keep the rewrite); keep the area's registration at 32 bytes (rseq-gen modules register 32); or run the peer in slow mode.",
         title="tcmalloc overlays `cpu_id_start`",
         why="tcmalloc relies on the kernel rewriting `cpu_id_start` after every preemption; kernels 6.19 and 7.0 without the legacy-mode fix skip that, and a registration longer than 32 bytes kills a process that writes the field.",
         example="tcmalloc sharing a `compat` module's `__rseq_abi` with glibc's registration off is reported."),
    Rule("RSEQ707", "peer-slow-mode", "warning", "Coexistence",
         "A peer that has its per-CPU fast path alone runs in slow mode beside this process's other modules: one of them registered the thread first with an area the peer cannot use.",
         "{peer} ({adopter}) runs in slow mode on the {threads}: {where}; the thread's registration belongs to {by}; alone it would be {alone}",
         "Generate the rseq-gen modules with a shared-area protocol (`compat`), so they register and share the peer's `__rseq_abi`, or let the peer register first.",
         title="A peer is pushed into slow mode",
         why="A module registered the thread first with an area the peer cannot use, so the peer loses the per-CPU fast path it has alone.",
         example="tcmalloc dlopen'd after an `own` module registered threads without glibc is reported."),
    Rule("RSEQ708", "module-on-fallbacks", "note", "Coexistence",
         "An rseq-gen module runs on its (exact, slower) fallbacks on threads whose registration belongs to an area it cannot use, where alone it would have a fast path.",
         "{module} runs on fallbacks on the {threads}: {where}; the thread's registration belongs to {by}",
         "Generate the module with `compat` (it uses glibc's area, librseq's area and a shared `__rseq_abi`), or keep the other owner out of the process.",
         title="An rseq-gen module runs on its fallbacks",
         why="Informational: results stay exact, but the module takes its slower fallbacks on threads whose registration belongs to an area it cannot use.",
         example="An `own` module beside tcmalloc when tcmalloc registered the thread first (glibc's registration off): shown with `--notes` or `-v`."),
    # ---- input ----------------------------------------------------------
    Rule("RSEQ801", "arch-unknown", "warning", "Input",
         "The ELF machine has no known RSEQ_SIG, so abort signatures were not checked.",
         "machine {machine} has no known RSEQ_SIG; signatures not checked",
         "Report the architecture so its signature can be added.",
         title="Unknown architecture: signatures not checked",
         why="Without the architecture's RSEQ_SIG the verifier cannot check the bytes before each abort handler, which the kernel checks at run time.",
         example="A mips object (no RSEQ_SIG in the table) is reported."),
)

RULES = {r.id: r for r in RULE_LIST}
RULES_BY_NAME = {r.name: r for r in RULE_LIST}


def find_rule(text: str) -> Rule | None:
    """A rule by ID (``RSEQ602``, any case, or just ``602``) or by name."""
    key = text.strip()
    if key.isdigit():
        key = "RSEQ" + key
    return RULES.get(key.upper()) or next((r for r in RULE_LIST if r.name == key.lower()), None)


def explain_text(rule: Rule, width: int = 78) -> str:
    """What ``rseq-gen explain RULE`` prints."""
    import textwrap

    def para(label: str, text: str) -> list[str]:
        return [label] + textwrap.wrap(text, width - 2, initial_indent="  ", subsequent_indent="  ") + [""]

    raised = f" Raised: {rule.raised}." if rule.raised else ""
    lines = [f"{rule.id} {rule.name}: {rule.title}"]
    lines += textwrap.wrap(f"Severity: {rule.severity}; category: {rule.category}.{raised}", width) + [""]
    lines += para("What it checks:", rule.summary)
    lines += para("Why it matters:", rule.why)
    lines += para("How to fix:", rule.fix)
    lines += para("Example:", rule.example)
    return "\n".join(lines).rstrip() + "\n"


def list_text() -> str:
    """What ``rseq-gen explain`` prints without a rule: one line per rule."""
    width = max(len(r.name) for r in RULE_LIST)
    lines = [f"{r.id}  {r.name.ljust(width)}  {r.severity:<7}  {r.title}" for r in RULE_LIST]
    lines.append("")
    lines.append("rseq-gen explain RULE (an ID such as RSEQ602, or a name) explains one rule.")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    lines = [
        "# rseq-gen verify: what does a finding mean, and how do I fix it?",
        "",
        "<!-- Generated by `python -m rseq_gen.rules docs/rules.md` from toolkit/rseq_gen/rules.py."
        " Do not edit. -->",
        "",
        "Every finding of `rseq-gen verify` carries one of these IDs; `rseq-gen explain ID` prints",
        "the same explanation in a terminal. IDs are stable: a rule that is retired keeps its number.",
        "`--fail-on error` (the default) makes the command exit 1 on any error; `--fail-on warning`",
        "also on warnings. Notes never fail, and the text output shows them only with `--notes`",
        "or `-v`.",
        "",
        "| ID | Name | Severity | What |",
        "|---|---|---|---|",
    ]
    for r in RULE_LIST:
        lines.append(f"| [{r.id}](#{r.id.lower()}-{r.name}) | `{r.name}` | {r.severity} | {r.title} |")
    lines.append("")
    for r in RULE_LIST:
        raised = f" (raised: {r.raised})" if r.raised else ""
        lines += [f"## {r.id} {r.name}", "", f"**{r.title}.** Severity: **{r.severity}**{raised}. "
                  f"Category: {r.category}.", "", r.summary, "", f"Why it matters: {r.why}", "",
                  f"Fix: {r.fix}", "", f"Example: {r.example}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rseq_gen.rules",
                                     description="Write (or with --check, compare) the rules reference.")
    parser.add_argument("path", nargs="?", type=Path, help="markdown file to write; standard output without it")
    parser.add_argument("--check", action="store_true", help="exit 1 when PATH differs from the generated text")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.path is None:
        if args.check:
            parser.error("--check needs PATH")
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m rseq_gen.rules {args.path}", file=sys.stderr)
            return 1
        return 0
    from rseq_gen.fsutil import write_atomic

    write_atomic(args.path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
