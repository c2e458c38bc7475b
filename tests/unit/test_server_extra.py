"""One place decides when a missing package means "install the server extra": a whole
command (its stand-in) and a client command's server-side path say the same."""

from __future__ import annotations

import pytest

from hokusai.cli.lazy_commands import (
    EXIT_NEEDS_SERVER_EXTRA,
    SERVER_INSTALL,
    missing_server_package,
    server_extra,
)


def missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_a_missing_server_package_says_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited, server_extra("hokusai x on the store", "Or not."):
        raise missing("sqlalchemy.orm")
    assert exited.value.code == EXIT_NEEDS_SERVER_EXTRA == 1
    assert capsys.readouterr().err.splitlines() == [
        f"hokusai x on the store needs the server extra: {SERVER_INSTALL}",
        "(the Python package 'sqlalchemy.orm' is not installed)",
        "Or not.",
    ]


def test_any_other_missing_module_is_a_defect_and_raised_as_it_is() -> None:
    with pytest.raises(ModuleNotFoundError, match="numpyy"), server_extra("hokusai x"):
        raise missing("numpyy")
    with pytest.raises(ModuleNotFoundError), server_extra("hokusai x"):
        raise missing("hokusai.nothing")


def test_which_packages_are_the_servers() -> None:
    assert missing_server_package(missing("pydantic_settings")) == "pydantic_settings"
    assert missing_server_package(missing("mlflow.server.handlers")) == "mlflow.server.handlers"
    assert missing_server_package(missing("mlflow.sklearn")) is None
    assert missing_server_package(missing("httpx")) is None
