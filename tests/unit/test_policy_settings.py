"""The rules and limits as settings: one set of flags and variables for gateway and processor."""

from __future__ import annotations

import argparse

import pytest

from gateway.settings import GatewaySettings
from prgate.domain import Policy
from prgate.policy_settings import PolicySettings
from prgate.settings import add_arguments, load, redacted, reference_table
from processor.settings import ProcessorSettings

LIMITS = {
    "PRGATE_REQUIRED_APPROVALS": "2",
    "PRGATE_MAX_TITLE_LENGTH": "80",
    "PRGATE_MAX_TITLE_BYTES": "200",
    "PRGATE_MAX_DESCRIPTION_BYTES": "10000",
    "PRGATE_MAX_REPOSITORY_BYTES": "140",
    "PRGATE_MAX_BRANCH_BYTES": "100",
    "PRGATE_MAX_NAME_BYTES": "39",
    "PRGATE_MAX_CHECK_NAME_BYTES": "120",
    "PRGATE_MAX_COMMIT_MESSAGE_BYTES": "5000",
    "PRGATE_MAX_REASON_BYTES": "500",
    "PRGATE_MAX_CHECKS": "50",
    "PRGATE_MAX_REVIEWS": "10",
}
EXPECTED = Policy(
    required_approvals=2,
    max_title_length=80,
    max_title_bytes=200,
    max_description_bytes=10000,
    max_repository_bytes=140,
    max_branch_bytes=100,
    max_name_bytes=39,
    max_check_name_bytes=120,
    max_commit_message_bytes=5000,
    max_reason_bytes=500,
    max_checks=50,
    max_reviews=10,
)


def parsed(cls: type, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return parser.parse_args(list(argv))


def test_gateway_and_processor_take_the_same_variables() -> None:
    gateway = load(GatewaySettings, parsed(GatewaySettings), environ=LIMITS)
    processor = load(ProcessorSettings, parsed(ProcessorSettings), environ=LIMITS)
    assert gateway.policy() == EXPECTED
    assert processor.policy() == Policy(**{**EXPECTED.__dict__, "recent_commands_kept": 64})


def test_a_flag_wins_over_the_variable() -> None:
    args = parsed(ProcessorSettings, "--max-checks", "7", "--recent-commands-kept", "3")
    processor = load(ProcessorSettings, args, environ=LIMITS)
    assert (processor.policy().max_checks, processor.policy().recent_commands_kept) == (7, 3)


@pytest.mark.parametrize("cls", [GatewaySettings, ProcessorSettings])
@pytest.mark.parametrize(
    "env",
    [
        {"PRGATE_MAX_CHECKS": "0"},
        {"PRGATE_MAX_TITLE_BYTES": "-1"},
        {"PRGATE_REQUIRED_APPROVALS": "5", "PRGATE_MAX_REVIEWS": "4"},
    ],
)
def test_a_bad_limit_is_refused_at_start(cls: type, env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        load(cls, parsed(cls), environ=env)


def test_the_page_token_secret_is_redacted() -> None:
    shown = redacted(GatewaySettings(page_token_secret="hunter2"))
    assert shown["page_token_secret"] == "***"
    assert "hunter2" not in repr(shown)


def test_the_reference_has_the_limits_once() -> None:
    limits = reference_table(PolicySettings)
    for env in LIMITS:
        assert f"`{env}`" in limits
    gateway = reference_table(GatewaySettings, skip=PolicySettings)
    assert "PRGATE_MAX_CHECKS" not in gateway and "PRGATE_PAGE_TOKEN_SECRET" in gateway
