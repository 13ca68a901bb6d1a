"""Automated egress checks: what a file really is, and whether it can leave.

Entry points for the review queue: `run_checks` (one file, one policy), `worst` (combine
outcomes), `gather_identifiers` (a dataset's patient identifiers, for `CheckContext`).
See docs/egress-checks.md for every check and its policy knobs.
"""

from egress_review.checks.identifiers import gather_identifiers
from egress_review.checks.model import CheckContext, CheckResult, Outcome, worst
from egress_review.checks.runner import run_checks

__all__ = ["CheckContext", "CheckResult", "Outcome", "gather_identifiers", "run_checks", "worst"]
