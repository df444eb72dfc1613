"""The per-CPU operations, as one data table.

Each operation is a short list of steps over its C parameters and a few
scratch registers (``s0``, ``s1``, ``s2``); every architecture template
(templates/arch/*.j2) turns each step kind into instructions, and
templates/arch/_ops.j2 instantiates every operation for every indexing mode
and memory order by loops. The last step is the commit: its store is the
last instruction of the restartable sequence.

The fallback (no rseq area for the thread) is written from the same table in
templates/rseq.c.j2: ``add`` is one atomic read-modify-write; every other
operation runs under a lock striped by the address of its ``key`` parameter
(the word that commits, or the pointer that is dereferenced), with atomic
accesses inside, so operations of one data structure (which share that word)
are serialised as they are on one CPU under rseq. docs/c-api.md says the same.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Scratch registers a step may name; the arch templates map them to
#: registers (x86_64: rax, rcx, rdx; aarch64: x17, x16, x15; ...).
SCRATCH = ("s0", "s1", "s2")

#: Bytes between the copies of a per-CPU pool item: the largest page size of
#: the supported architectures (64 KiB on ppc64 and aarch64), so every copy
#: sits on pages of its own and an untouched CPU costs no resident memory.
POOL_STRIDE = 65536
#: Address ranges a pool maps at most: 64 ranges of 64 KiB per copy, 4 MiB
#: of items per CPU (allocation fails with ENOMEM beyond).
POOL_RANGES = 64
#: Lock stripes of the fallback path (a power of two).
FALLBACK_LOCK_STRIPES = 64
PARAM_KINDS = ("ptr", "buffer", "value", "stored", "addend", "index")


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str
    #: How the asm receives it: "ptr" (an address register), "buffer" (an
    #: address the memcpy loop indexes: a base register, or on x86 a memory
    #: operand it reloads), "value" (a word read by compare/move
    #: instructions; may be a memory operand on x86), "stored" (a word only
    #: stored, through the step's via register when it is a memory operand:
    #: x86 always, others when an operation would use more registers than
    #: the arch has for operands), "addend" (added into memory: a register
    #: or an immediate on x86), "index" (a value added to an address a load
    #: reads: a register where the arch has base + index addressing).
    kind: str

    @property
    def declaration(self) -> str:
        sep = "" if self.ctype.endswith("*") else " "
        return f"{self.ctype}{sep}{self.name}"


@dataclass(frozen=True)
class Step:
    """One step of a sequence.

    kinds and operands (param names or scratch names):
      load      (dst, ptr)            dst = *ptr; with ``index``: dst = *(ptr + index)
                                      (ptr and dst the same scratch register: the
                                      architectures without base + index
                                      addressing add into it first)
      bne / beq (reg, value, label)   branch to the C label when reg != / == value
      add       (reg, value)          reg += value
      store     (src, ptr)            *ptr = src; ``via`` names a scratch register an
                                      arch may route src through (x86 has no
                                      memory-to-memory move)
      add_store (value, ptr)          *ptr += value; ``via`` is the temporary of the
                                      load/add/store architectures
      memcpy    (dst, src, len)       copy len bytes; the arch picks its scratch
                                      registers among s0..s2
    """
    kind: str
    args: tuple
    via: str | None = None
    index: str | None = None


@dataclass(frozen=True)
class Operation:
    name: str
    #: One line of semantics (docs/c-api.md table, header comment, manifest).
    summary: str
    params: tuple[Param, ...]
    steps: tuple[Step, ...]
    #: Parameter whose address picks the fallback lock and the TSan sync
    #: object: the word the structure's operations share.
    key: str
    #: Memory orders of the commit store this operation comes in.
    orders: tuple[str, ...] = ("relaxed",)
    #: Scratch register free just before the commit, which a test's delay
    #: injection (P_RSEQ_INJECT_ASM) may use.
    inject_via: str = "s0"
    #: Where the x86 executable code's mm_cid word per thread is read from:
    #: False, with one %fs-relative load; True, as a plain load at its offset
    #: from the thread pointer (a register the compiler may keep). Measured
    #: against librseq (docs/benchmarks.md): pop, whose sequence loads the
    #: node its head points at and stores it as the next head, ran 7-20 %
    #: slower with the %fs-relative word, calls in a loop and calls one at a
    #: time alike; every other operation ran 3-13 % slower from the thread
    #: pointer when called one at a time (one more load per call).
    mmcid_word_from_thread_pointer: bool = False

    @property
    def commit(self) -> Step:
        return self.steps[-1]

    def steps_for(self, compare_memory: bool) -> tuple[Step, ...]:
        """The steps as an architecture runs them. Where it can compare a
        word in memory with a register or immediate (x86_64), a load whose
        register no later step reads is folded into the compare after it:
        ``bne_mem`` / ``beq_mem`` (ptr, value, label) branch when
        ``*ptr != value`` / ``== value`` (one instruction fewer, the same
        as the hand-written floor)."""
        if not compare_memory:
            return self.steps
        out, i = [], 0
        while i < len(self.steps):
            s = self.steps[i]
            nxt = self.steps[i + 1] if i + 1 < len(self.steps) else None
            if (s.kind == "load" and s.index is None and nxt is not None
                    and nxt.kind in ("bne", "beq") and nxt.args[0] == s.args[0]
                    and nxt.args[1] != s.args[0] and not self._read_later(s.args[0], i + 2)):
                out.append(Step(f"{nxt.kind}_mem", (s.args[1], nxt.args[1], nxt.args[2])))
                i += 2
                continue
            out.append(s)
            i += 1
        return tuple(out)

    def compared_in_memory(self) -> frozenset[str]:
        """Parameters a ``bne_mem`` / ``beq_mem`` compares with memory: x86
        passes them in a register, since ``cmp %reg, (%ptr)`` fuses with its
        branch and ``cmp $imm, (%ptr)`` does not (one more micro-op: 1.08x
        on cmp2xchg, measured against librseq, which compares registers)."""
        return frozenset(s.args[1] for s in self.steps_for(True) if s.kind in ("bne_mem", "beq_mem"))

    def memory_operands(self) -> frozenset[str]:
        """Pointer parameters an architecture may pass as memory operands
        (``"m"(*ptr)``, x86): the ones besides the key, which the sequence
        stores or compares once, so that the compiler folds their address
        into the instruction (``0x10(%rdi)``; the slow path takes them
        relative to the key, Variant.slow_args, or it would compute them
        into a register before the sequence anyway). The key stays a
        register: an "m" operand lets the compiler address it as
        ``(%base,%index)``, and a chain of read-modify-writes through such an
        address ran 3x slower (docs/benchmarks.md). The steps only ever
        dereference pointer parameters (check_table)."""
        return frozenset(p.name for p in self.params if p.kind == "ptr" and p.name != self.key)

    def _read_later(self, reg: str, start: int) -> bool:
        """Whether a step from ``start`` on reads scratch ``reg`` before
        writing it (memcpy only writes scratch registers)."""
        for s in self.steps[start:]:
            if s.kind == "memcpy":
                if reg in s.args:
                    return True
                continue
            reads = {"load": (s.args[1], s.index), "add": s.args, "bne": s.args[:2], "beq": s.args[:2],
                     "store": s.args, "add_store": s.args}[s.kind]
            if reg in reads:
                return True
            if (s.kind == "load" and s.args[0] == reg) or (s.kind == "store" and s.via == reg):
                return False
        return False

    @property
    def can_fail_compare(self) -> bool:
        return any(s.kind in ("bne", "beq") for s in self.steps)

    @property
    def exits(self) -> tuple[str, ...]:
        """C labels the sequence leaves through before its end (besides the
        kernel's abort): the index check always, the compare when there is one."""
        return ("mismatch", "cmpfail") if self.can_fail_compare else ("mismatch",)

    def scratch_used(self, memcpy_scratch: int) -> tuple[str, ...]:
        """Scratch registers the operation clobbers on an architecture whose
        memcpy loop uses ``memcpy_scratch`` of them."""
        used = {"s0", self.inject_via}  # s0: also the prologue's scratch
        for s in self.steps:
            if s.kind == "memcpy":
                used.update(SCRATCH[:memcpy_scratch])
            used.update(a for a in (*s.args, s.via) if a in SCRATCH)
        return tuple(r for r in SCRATCH if r in used)

    @property
    def c_scratch(self) -> tuple[str, ...]:
        """Scratch names the C fallback needs as variables."""
        return tuple(r for r in SCRATCH if any(r in s.args for s in self.steps))

    @property
    def lockless_fallback(self) -> bool:
        """A lone add into memory: the fallback is one atomic, no lock (so
        counters stay usable from signal handlers on every path)."""
        return len(self.steps) == 1 and self.steps[0].kind == "add_store"

    @property
    def commit_is_cas(self) -> bool:
        """The fallback commits with a compare-and-swap on the key word
        (against the value first loaded from it)."""
        return self.commit.kind == "store" and self.commit.args[1] == self.key

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


@dataclass(frozen=True)
class IndexMode:
    name: str
    #: Public name part: P_<api>_<op>.
    api: str
    #: Field of the rseq area the sequence compares with the index.
    field: str
    #: Name of the index parameter.
    index: str
    #: Infix of the arch functions: P__arch_cs_<infix><op>.
    arch_infix: str
    doc: str
    #: The pointer per thread (initial-exec TLS, after ``P_``) the mode's
    #: operations take the area from where the fast paths read one, and
    #: when it leaves the unknown area.
    area_pointer: str
    area_pointer_doc: str


@dataclass(frozen=True)
class MemoryOrder:
    name: str
    suffix: str
    doc: str


MODES = (
    IndexMode("cpu", "percpu", "cpu_id", "cpu", "",
              "on the slot of CPU `cpu`; the sequence checks cpu_id",
              "_thread_area_ptr", "its area"),
    IndexMode("mmcid", "mmcid", "mm_cid", "cid", "mmcid_",
              "on the slot of concurrency id `cid` (mm_cid, kernel >= 6.3); the sequence checks mm_cid",
              "_thread_mmcid_area_ptr", "an area where the kernel maintains mm_cid"),
)
MODE = {m.name: m for m in MODES}

ORDERS = {
    "relaxed": MemoryOrder("relaxed", "", "plain commit store"),
    "release": MemoryOrder("release", "_release",
                           "commit store with release semantics: the stores before it are visible first"),
}


def _p(name, ctype, kind):
    return Param(name, ctype, kind)


_V = _p("v", "intptr_t *", "ptr")
_EXPECT = _p("expect", "intptr_t", "value")
_NEWV = _p("newv", "intptr_t", "stored")

OPERATIONS = (
    Operation(
        "add", "`*v += count`",
        (_V, _p("count", "intptr_t", "addend")),
        (Step("add_store", ("count", "v"), via="s0"),),
        key="v"),
    Operation(
        "cmpxchg", "if `*v == expect`: `*v = newv`",
        (_V, _EXPECT, _NEWV),
        (Step("load", ("s0", "v")),
         Step("bne", ("s0", "expect", "cmpfail")),
         Step("store", ("newv", "v"), via="s0")),
        key="v"),
    Operation(
        "pop", "if `*head != expect_not`: `*popped = *head`, `*head = *(intptr_t *)(*head + next_offset)`; "
               "1 when `*head == expect_not` (empty)",
        (_p("head", "intptr_t *", "ptr"), _p("expect_not", "intptr_t", "value"),
         _p("next_offset", "long", "index"), _p("popped", "intptr_t *", "ptr")),
        (Step("load", ("s0", "head")),
         Step("beq", ("s0", "expect_not", "cmpfail")),
         Step("store", ("s0", "popped")),
         Step("load", ("s0", "s0"), index="next_offset"),
         Step("store", ("s0", "head"))),
        key="head", inject_via="s1", mmcid_word_from_thread_pointer=True),
    Operation(
        "deref_add", "`*(intptr_t *)(*ptr + offset) += inc` (a per-CPU pointer plus an offset)",
        (_p("ptr", "intptr_t *", "ptr"), _p("offset", "long", "value"), _p("inc", "intptr_t", "addend")),
        (Step("load", ("s0", "ptr")),
         Step("add", ("s0", "offset")),
         Step("add_store", ("inc", "s0"), via="s1")),
        key="ptr", inject_via="s1"),
    Operation(
        "cmpxchg_store", "if `*v == expect`: `*v2 = newv2`, then `*v = newv` (publish the data, then the index)",
        (_V, _EXPECT, _p("v2", "intptr_t *", "ptr"), _p("newv2", "intptr_t", "stored"), _NEWV),
        (Step("load", ("s0", "v")),
         Step("bne", ("s0", "expect", "cmpfail")),
         Step("store", ("newv2", "v2"), via="s0"),
         Step("store", ("newv", "v"), via="s0")),
        key="v", orders=("relaxed", "release")),
    Operation(
        "cmp2xchg", "if `*v == expect && *v2 == expect2`: `*v = newv`",
        (_V, _EXPECT, _p("v2", "intptr_t *", "ptr"), _p("expect2", "intptr_t", "value"), _NEWV),
        (Step("load", ("s0", "v")),
         Step("bne", ("s0", "expect", "cmpfail")),
         Step("load", ("s0", "v2")),
         Step("bne", ("s0", "expect2", "cmpfail")),
         Step("store", ("newv", "v"), via="s0")),
        key="v"),
    Operation(
        "cmpxchg_memcpy", "if `*v == expect`: copy `len` bytes from `src` to `dst`, then `*v = newv`",
        (_V, _EXPECT, _p("dst", "void *", "buffer"), _p("src", "const void *", "buffer"),
         _p("len", "size_t", "value"), _NEWV),
        (Step("load", ("s0", "v")),
         Step("bne", ("s0", "expect", "cmpfail")),
         Step("memcpy", ("dst", "src", "len")),
         Step("store", ("newv", "v"), via="s0")),
        key="v", orders=("relaxed", "release")),
)
OPERATION = {o.name: o for o in OPERATIONS}


@dataclass(frozen=True)
class Variant:
    """One generated operation: an operation in one indexing mode and order."""
    op: Operation
    mode: IndexMode
    order: MemoryOrder

    @property
    def stem(self) -> str:
        return f"{self.op.name}{self.order.suffix}"

    def public(self, prefix: str) -> str:
        return f"{prefix}_{self.mode.api}_{self.stem}"

    def arch(self, prefix: str) -> str:
        return f"{prefix}__arch_cs_{self.mode.arch_infix}{self.stem}"

    def slow(self, prefix: str) -> str:
        return f"{prefix}__{self.mode.api}_{self.stem}_slow"

    def fallback(self, prefix: str) -> str:
        return f"{prefix}__fallback_{self.stem}"

    @property
    def c_params(self) -> str:
        """The C parameter list: the operation's, then the index."""
        return ", ".join([p.declaration for p in self.op.params] + [f"int {self.mode.index}"])

    @property
    def c_args(self) -> str:
        return ", ".join([p.name for p in self.op.params] + [self.mode.index])

    # The out-of-line slow path takes every pointer but the key as its
    # distance from the key. Passed as is, the pointer would have to be in a
    # register at the asm goto, whose exits lead to the call: the compiler
    # then computes it before the sequence (a lea) instead of folding it into
    # the sequence's memory operand (0x10(%rdi)). A distance between two
    # pointers into one object folds to a constant, computed on the slow
    # path only. (+5-7 % on one-at-a-time cmpxchg_store, against librseq.)
    def _relative(self, p: Param) -> bool:
        return p.kind == "ptr" and p.name != self.op.key

    @property
    def slow_params(self) -> str:
        return ", ".join([f"ptrdiff_t {p.name}_from_{self.op.key}" if self._relative(p) else p.declaration
                          for p in self.op.params] + [f"int {self.mode.index}"])

    @property
    def slow_args(self) -> str:
        key = self.op.key
        return ", ".join([f"(ptrdiff_t)((uintptr_t){p.name} - (uintptr_t){key})" if self._relative(p) else p.name
                          for p in self.op.params] + [self.mode.index])

    @property
    def slow_rebuilt(self) -> tuple[str, ...]:
        """Declarations the slow path starts with: the pointers again."""
        key = self.op.key
        return tuple(f"{p.declaration} = ({p.ctype})((uintptr_t){key} + (uintptr_t){p.name}_from_{key});"
                     for p in self.op.params if self._relative(p))

    def describe(self, prefix: str) -> dict:
        return {"name": self.public(prefix), "operation": self.op.name, "mode": self.mode.name,
                "order": self.order.name, "arch_function": self.arch(prefix),
                "slow_path": self.slow(prefix), "summary": self.op.summary,
                "params": [p.name for p in self.op.params] + [self.mode.index],
                "exits": list(self.op.exits)}


def variants() -> tuple[Variant, ...]:
    return tuple(Variant(op, mode, ORDERS[o]) for op in OPERATIONS for mode in MODES for o in op.orders)


def _live_scratch_before_commit(op: Operation) -> set[str]:
    """Scratch registers the commit step reads (so the delay injection must
    not clobber them)."""
    c = op.commit
    reads = {a for a in c.args if a in SCRATCH}
    return reads - ({c.via} if c.kind == "store" and c.via not in c.args else set())


def check_table() -> None:
    """The invariants the templates rely on; a test runs this."""
    for op in OPERATIONS:
        names = [p.name for p in op.params]
        assert len(set(names)) == len(names), op.name
        assert op.key in names and op.param(op.key).kind == "ptr", op.name
        assert op.commit.kind in ("store", "add_store"), op.name
        if op.commit_is_cas:  # the fallback needs the key's first value
            assert any(s.kind == "load" and s.args[1] == op.key for s in op.steps), op.name
        assert op.inject_via in SCRATCH and op.inject_via not in _live_scratch_before_commit(op), op.name
        assert all(o in ORDERS for o in op.orders), op.name
        assert all(p.kind in PARAM_KINDS for p in op.params), op.name
        for s in op.steps:
            for a in s.args:
                assert a in SCRATCH or a in names or a == "cmpfail", (op.name, s)
            if s.kind in ("store", "add_store") and s.args[0] in names:
                assert s.via in SCRATCH, (op.name, s)
            if s.kind == "store" and s.args[0] in names:
                assert op.param(s.args[0]).kind == "stored", (op.name, s)
            # A pointer parameter is only ever dereferenced (memory_operands).
            deref = {"load": (1,), "store": (1,), "add_store": (1,)}.get(s.kind, ())
            assert all(i in deref for i, a in enumerate(s.args)
                       if a in names and op.param(a).kind == "ptr"), (op.name, s)
            if s.index is not None:
                assert s.kind == "load" and s.args[0] == s.args[1] and s.args[0] in SCRATCH, (op.name, s)
                assert op.param(s.index).kind == "index", (op.name, s)
            if s.kind == "store" and s.via is not None and s.via != s.args[0]:
                # via is clobbered by the store: it must hold nothing the step reads.
                assert s.via not in s.args[1:], (op.name, s)


def markdown_table() -> str:
    """The operations table of docs/c-api.md, made from the rows above (a test
    keeps the page in step): one row per operation and memory order, the CPU form
    and its mm_cid twin."""
    lines = ["| operation (`P_percpu_…` on `cpu`, `P_mmcid_…` on `cid`) | commits | fallback without rseq |",
             "|---|---|---|"]
    for op in OPERATIONS:
        for order in op.orders:
            cpu, mmcid = (Variant(op, m, ORDERS[order]) for m in MODES)
            sig = f"`int {cpu.public('P')}({cpu.c_params})`<br>`{mmcid.public('P')}(…, int cid)`"
            what = op.summary + (f"; {ORDERS[order].doc}" if order != "relaxed" else "")
            fallback = "one atomic add" if op.lockless_fallback else f"under the stripe lock of `{op.key}`"
            lines.append(f"| {sig} | {what} | {fallback} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
