"""Static checks of a rule set with z3: consistency, dead ends, invariant, vacuity, redundancy.

Every query runs with a timeout, and z3 ``unknown`` fails the check (a check
that cannot be decided is not a pass). Domain = the declared ranges, enums
and action labels; dead ends and the invariant check are also restricted to
the declared ``invariant:`` (the states the rules are meant to keep you in).

    python -m symbolic.verify RULES [--strict]      # exit 0 pass, 1 fail, 2 malformed
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any as AnyType, Sequence

import z3
from gymnasium import spaces

from . import bindings, nodes as n
from .compile_z3 import Env, Frame, Z3Compiler, domain
from .errors import RuleError
from .analysis import is_step_evaluable
from .parser import parse
from .ruleset import RuleSet, read_rules

MAX_CHOICES = 256  # enumerate at most this many discrete action combinations


@dataclass
class Item:
    """One finding. ``severity`` is "error" (fails the check) or "warning"."""

    check: str
    severity: str
    message: str
    rules: tuple[str, ...] = ()
    counterexample: dict[str, float] | None = None
    location: str = ""
    details: tuple[str, ...] = ()


@dataclass
class Report:
    path: str
    items: list[Item] = field(default_factory=list)
    passed: list[tuple[str, str]] = field(default_factory=list)  # (check, what was shown)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.items)

    @property
    def errors(self) -> list[Item]:
        return [i for i in self.items if i.severity == "error"]

    @property
    def warnings(self) -> list[Item]:
        return [i for i in self.items if i.severity == "warning"]

    def format(self) -> str:
        lines = [f"rules check: {self.path}"]
        lines += [f"  PASS {check:<12} {what}" for check, what in self.passed]
        for item in self.items:
            tag = "FAIL" if item.severity == "error" else "WARN"
            where = f"{item.location}: " if item.location else ""
            lines.append(f"  {tag} {item.check:<12} {where}{item.message}")
            if item.counterexample:
                state = ", ".join(f"{k}={_fmt(v)}" for k, v in item.counterexample.items())
                lines.append(f"       counterexample: {state}")
            lines += [f"       {d}" for d in item.details]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"result: {verdict} ({len(self.errors)} error(s), {len(self.warnings)} "
                     f"warning(s), {self.seconds:.2f} s)")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _value(model: z3.ModelRef, term: z3.ArithRef) -> float:
    v = model.eval(term, model_completion=True)
    if z3.is_algebraic_value(v):
        v = v.approx(12)
    if z3.is_rational_value(v):
        return float(v.as_fraction())
    return float("nan")


class _Checker:
    def __init__(self, program: n.Program, timeout_ms: int, report: Report,
                 action_space: spaces.Space | None) -> None:
        self.p, self.timeout_ms, self.report = program, timeout_ms, report
        self.z = Z3Compiler(program)
        self.discrete = [a for a in program.actions if a.discrete]
        self.continuous = [a for a in program.actions if not a.discrete]
        self.choices = self._choices(action_space)

    def _choices(self, action_space: spaces.Space | None) -> list[dict[str, int]] | None:
        if not self.discrete:
            return [{}]
        if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)):
            lay = bindings.layout(self.p, action_space)
            rows = lay.choices.reshape(len(lay.choices), -1)  # type: ignore[union-attr]
            combos = [{a.name: int(row[a.index or 0]) for a in self.discrete} for row in rows]
        else:
            sets = [[v for _, v in a.labels] for a in self.discrete]
            combos = [dict(zip([a.name for a in self.discrete], c))
                      for c in itertools.product(*sets)]
        unique = [dict(t) for t in {tuple(sorted(c.items())) for c in combos}]
        return sorted(unique, key=lambda c: tuple(c.values())) if len(unique) <= MAX_CHOICES else None

    def where(self, rule: n.Rule | None) -> str:
        return f"{self.p.path}:{rule.span.line}:{rule.span.column}" if rule else self.p.path

    def solve(self, check: str, formulas: Sequence[z3.BoolRef],
              tracked: dict[str, z3.BoolRef] | None = None) -> tuple[str, AnyType]:
        solver = z3.Solver()
        solver.set("timeout", self.timeout_ms)
        solver.add(*formulas)
        for name, f in (tracked or {}).items():
            solver.assert_and_track(f, z3.Bool(f"rule:{name}"))
        result = solver.check()
        if result == z3.sat:
            return "sat", solver.model()
        if result == z3.unsat:
            return "unsat", [str(c)[5:] for c in solver.unsat_core()]
        self.report.items.append(Item(check, "error", f"z3 could not decide this check "
                                      f"({solver.reason_unknown()}); unknown counts as a failure",
                                      location=self.p.path))
        return "unknown", None

    def state_of(self, model: z3.ModelRef, frame: Frame, lags: bool = False) -> dict[str, float]:
        return {(name if lag == 0 else f"{name}@{lag:+d}"): _value(model, v)
                for (name, lag), v in sorted(frame.variables().items(), key=lambda kv: kv[0][1] != 0)
                if lag == 0 or lags}

    # ---- checks ------------------------------------------------------------
    def consistency(self) -> None:
        frame = Frame(self.p)
        rules = {r.name: self.z.rule(r, Env(frame)) for r in self.p.rules}
        status, result = self.solve("consistency", frame.constraints, rules)
        if status == "sat":
            self.report.passed.append(("consistency", "all rules can hold together"))
        elif status == "unsat":
            core = tuple(result)
            first = next((r for r in self.p.rules if r.name in core), None)
            details: tuple[str, ...] = ()
            example = None
            if len(core) > 1:  # show a domain state where all but the last core rule hold
                status2, model = self.solve("consistency", [*frame.constraints,
                                                            *(rules[c] for c in core[:-1])])
                if status2 == "sat":
                    example = self.state_of(model, frame)
                    details = (f"there {', '.join(core[:-1])} hold(s) but {core[-1]} fails",)
            self.report.items.append(Item(
                "consistency", "error", "rules cannot all hold anywhere in the declared domain: "
                f"conflict between {', '.join(core)}", core, example, self.where(first), details))

    def dead_ends(self) -> None:
        hard = [r for r in self.p.rules if r.kind == "hard" and is_step_evaluable(self.p, r.body)]
        if self.choices is None:
            self.report.items.append(Item("dead_end", "warning", f"more than {MAX_CHOICES} "
                                          "discrete action combinations: dead-end check skipped"))
            return
        frame = Frame(self.p)
        blocked, per_choice = [], []
        for choice in self.choices:
            overrides = {k: z3.RealVal(v) for k, v in choice.items()}
            acts = {a.name: z3.Real(f"{a.name}!") for a in self.continuous}
            env = Env(frame, 0, {**overrides, **acts})
            formulas = {r.name: self.z.rule(r, env) for r in hard}
            allowed = z3.And(list(formulas.values()))
            if acts:
                box = z3.And([c for a in self.continuous for c in domain(self.p, a.name, acts[a.name])])
                blocked.append(z3.ForAll(list(acts.values()), z3.Implies(box, z3.Not(allowed))))
            else:
                blocked.append(z3.Not(allowed))
            per_choice.append((choice, formulas))
        invariant = [self.z.boolean(self.p.invariant, Env(frame))] if self.p.invariant else []
        status, model = self.solve("dead_end", [*frame.constraints, *invariant, *blocked])
        scope = "in the invariant" if self.p.invariant else "in the declared domain"
        if status == "unsat":
            self.report.passed.append(("dead ends", f"every state {scope} has an allowed action"))
        if status != "sat":
            return
        state = self.state_of(model, frame, lags=True)
        details, involved = [], []
        for choice, formulas in per_choice:
            if self.continuous:
                continue
            names = [name for name, f in formulas.items()
                     if z3.is_false(model.eval(f, model_completion=True))]
            involved += [x for x in names if x not in involved]
            label = ", ".join(self._label(k, v) for k, v in choice.items()) or "any action"
            details.append(f"{label}: blocked by {', '.join(names)}")
        if self.continuous:
            involved = self._core_at(state, hard)
            details.append(f"no {', '.join(a.name for a in self.continuous)} in the declared "
                           f"range satisfies {', '.join(involved)}")
        first = next((r for r in hard if r.name in involved), None)
        self.report.items.append(Item(
            "dead_end", "error", f"dead end {scope}: every action is forbidden",
            tuple(involved), state, self.where(first), tuple(details)))

    def _label(self, action: str, value: int) -> str:
        names = [k for k, v in self.p.action(action).labels if v == value]
        return f"{action}={names[0] if names else value}"

    def _core_at(self, state: dict[str, float], hard: list[n.Rule]) -> list[str]:
        """Names of hard rules that jointly forbid every continuous action at this state."""
        frame = Frame(self.p)
        env = Env(frame)
        rules = {r.name: self.z.rule(r, env) for r in hard}
        pins = [v == z3.RealVal(str(state[name if lag == 0 else f"{name}@{lag:+d}"]))
                for (name, lag), v in frame.variables().items()
                if (name if lag == 0 else f"{name}@{lag:+d}") in state]
        status, core = self.solve("dead_end", [*frame.constraints, *pins], rules)
        return list(core) if status == "unsat" and core else [r.name for r in hard]

    def invariant(self) -> None:
        if self.p.invariant is None:
            return
        frame = Frame(self.p)
        inv = self.z.boolean(self.p.invariant, Env(frame))
        status, _ = self.solve("invariant", [*frame.constraints, inv])
        if status == "unsat":
            self.report.items.append(Item("invariant", "error", "the invariant is empty within "
                                          "the declared ranges", location=self.p.path))
            return
        if not self.p.model or status != "sat":
            return
        hard = [r for r in self.p.rules if r.kind == "hard" and is_step_evaluable(self.p, r.body)]
        env = Env(frame)
        kept = self.z.ibool(self.p.invariant, self.z.successor(env))[0]
        formulas = [*frame.constraints, inv, *(self.z.rule(r, env) for r in hard), z3.Not(kept)]
        status, model = self.solve("invariant", formulas)
        if status == "unsat":
            self.report.passed.append(("invariant", "every allowed action keeps the invariant "
                                       "under the declared model"))
        elif status == "sat":
            self.report.items.append(Item(
                "invariant", "error", "an allowed action can leave the invariant under the model",
                tuple(r.name for r in hard), self.state_of(model, frame), self.p.path))

    def vacuity_and_redundancy(self) -> None:
        vacuous: set[str] = set()
        for rule in self.p.rules:
            frame = Frame(self.p)
            f = self.z.rule(rule, Env(frame))
            status, _ = self.solve("vacuous", [*frame.constraints, z3.Not(f)])
            if status == "unsat":
                vacuous.add(rule.name)
                self.report.items.append(Item(
                    "vacuous", "warning", f"rule {rule.name} is always true in the declared domain "
                    "(no state or action in the declared ranges violates it)", (rule.name,),
                    None, self.where(rule)))
        if not any(i.check == "vacuous" for i in self.report.items):
            self.report.passed.append(("vacuity", "every rule can be violated"))
        found = False
        for rule in self.p.rules:
            others = [r for r in self.p.rules if r.kind == "hard" and r is not rule]
            if rule.name in vacuous or not others:
                continue
            frame = Frame(self.p)
            env = Env(frame)
            target = z3.Not(self.z.rule(rule, env))
            tracked = {r.name: self.z.rule(r, env) for r in others}
            status, core = self.solve("redundant", [*frame.constraints, target], tracked)
            if status == "unsat":
                found = True
                example = self._redundancy_example(rule, [r for r in others if r.name in core])
                self.report.items.append(Item(
                    "redundant", "warning", f"rule {rule.name} is implied by {', '.join(core)}",
                    (rule.name, *core), example, self.where(rule),
                    ("counterexample: a state where " + rule.name + " fails also breaks "
                     + ", ".join(core),) if example else ()))
        if not found:
            self.report.passed.append(("redundancy", "no rule is implied by the other hard rules"))

    def _redundancy_example(self, rule: n.Rule, core: list[n.Rule]) -> dict[str, float] | None:
        frame = Frame(self.p)
        env = Env(frame)
        status, model = self.solve("redundant", [*frame.constraints, z3.Not(self.z.rule(rule, env))])
        return self.state_of(model, frame) if status == "sat" else None


def verify(rules: RuleSet | n.Program | str, observation_space: spaces.Space | None = None,
           action_space: spaces.Space | None = None, timeout_ms: int = 2000) -> Report:
    """Run every static check; ``rules`` is a RuleSet, a parsed Program, or a path/name."""
    start = time.perf_counter()
    if isinstance(rules, str):
        text, path = read_rules(rules)
        program = parse(text, path)
    else:
        program = rules.program if isinstance(rules, RuleSet) else rules
    report = Report(program.path)
    for message, span in bindings.check_bindings(program, observation_space, action_space):
        report.items.append(Item("binding", "error", message,
                                 location=f"{program.path}:{span.line}:{span.column}"))
    if observation_space is not None or action_space is not None:
        if not report.items:
            report.passed.append(("bindings", "signals and actions fit the env's spaces"))
    checker = _Checker(program, timeout_ms, report,
                       action_space if not report.items else None)
    checker.consistency()
    if report.ok:  # dead ends are meaningless when nothing can hold
        checker.dead_ends()
        checker.invariant()
    checker.vacuity_and_redundancy()
    report.seconds = time.perf_counter() - start
    return report


def check_file(path: str, observation_space: spaces.Space | None = None,
               action_space: spaces.Space | None = None, strict: bool = False,
               timeout_ms: int = 2000) -> tuple[str, int]:
    """(report text, exit code): 0 pass, 1 failed checks (or warnings if strict), 2 malformed."""
    try:
        report = verify(path, observation_space, action_space, timeout_ms)
    except RuleError as error:
        return str(error), 2
    failed = not report.ok or (strict and report.warnings)
    return report.format(), 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    strict = "--strict" in args
    paths = [a for a in args if a != "--strict"]
    if not paths:
        print("usage: python -m symbolic.verify RULES... [--strict]", file=sys.stderr)
        return 2
    code = 0
    for path in paths:
        text, status = check_file(path, strict=strict)
        print(text)
        code = max(code, status)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
