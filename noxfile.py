"""Development sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s bench`, `nox -s demo`."""

import pathlib

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, with branch coverage (fails under 95%)."""
    session.install("-e", ".[test]")
    session.run("coverage", "erase")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        # Subprocesses (the CLI tests) measure coverage too, into this folder's data files.
        env={
            "COVERAGE_PROCESS_START": str(pathlib.Path("pyproject.toml").resolve()),
            "COVERAGE_FILE": str(pathlib.Path(".coverage").resolve()),
        },
    )
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library."""
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks, side by side with the baselines; `-- --quick` for a seconds-long check."""
    session.install(".", "matplotlib>=3.8")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Run the demo services (Ctrl-C stops them); extra arguments go to the CLI."""
    session.install(".")
    session.run("python", "-m", "loopsvc", *session.posargs)
