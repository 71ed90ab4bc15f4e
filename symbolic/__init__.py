"""Symbolic rules and the shield: a small rule language compiled to torch and z3.

    from symbolic import load_rules, RuleSet, Shield, RuleError
    rules = load_rules("minigrid_lava", env.observation_space, env.action_space)
    shield = Shield(rules, env.action_space, num_envs=8)
    executed, info = shield.filter(obs, proposed, preferences=logits, is_first=is_first)

This package imports nothing else of the project (stdlib, numpy, torch,
gymnasium, lark and z3 only).
"""
from .errors import RuleError
from .ledger import Ledger
from .parser import parse
from .ruleset import Evaluation, RuleSet, TrajectoryCheck, load_rules, mask_logits, shipped_names
from .shield import Shield
from .verify import Report, check_file, verify
from .wrapper import ShieldWrapper

__all__ = ["Evaluation", "Ledger", "Report", "RuleError", "RuleSet", "Shield", "ShieldWrapper",
           "TrajectoryCheck", "check_file", "load_rules", "mask_logits", "parse",
           "shipped_names", "verify"]
