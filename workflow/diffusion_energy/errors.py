"""User errors versus bugs: what the command line reports as one line, and what it does not.

Bad input (a config or architecture file with a mistake, an unknown model, a bad
command-line value, a GPU that is absent or of the wrong kind, a measurement table
that breaks the schema, a full disk, a folder one cannot write) is a *user error*:
the command prints one line naming the file, key, column or argument and exits
non-zero. Anything else is a bug and keeps its traceback.

A user error is an instance of ``UserError`` (the project's error classes derive
from it), of a class listed in ``FOREIGN_USER_ERRORS`` (error classes of modules
that do not derive from it), an ``OSError`` whose errno says the file system
refused (``USER_ERRNOS``), or a plain ``ValueError`` raised on purpose by a
``raise`` statement of this package (transitional: such messages were written for
the user; new code raises ``UsageError``).
"""

from __future__ import annotations

import errno
import json
import linecache
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # yaml is imported where a file is parsed: the command line starts without it
    import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


class UserError(Exception):
    """Bad input: reported as one line, never with a traceback."""


class UsageError(UserError, ValueError):
    """A command-line argument has a bad value; the message names the argument."""


class YamlSyntaxError(UserError, ValueError):
    """A YAML file does not parse; the message names the file, line and column."""


class ConfigFileMissing(UserError, ValueError):
    """The workflow's config file is not where Snakemake looks for it (the folder it runs in)."""


#: Error classes of modules that do not derive from ``UserError``: module -> class names.
#: Looked up only in modules already imported (an exception of a class can only be raised
#: once its module is imported), so the command line imports nothing for this check.
FOREIGN_USER_ERRORS: dict[str, tuple[str, ...]] = {
    "diffusion_energy.sources.schema": ("DatasetError",),
    "diffusion_energy.sources.provenance": ("SourceError",),
    "diffusion_energy.laws.analysis_io": ("NoLawError",),
    "diffusion_energy.laws.powerlaw": ("NotIdentifiable",),
    "yaml": ("YAMLError",),
}

#: errnos that mean the file system refused a user's path (not a bug of this program).
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOENT, errno.EDQUOT,
               errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG}
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def _foreign_classes() -> tuple[type, ...]:
    classes = []
    for module, names in FOREIGN_USER_ERRORS.items():
        mod = sys.modules.get(module)
        classes += [getattr(mod, n) for n in names if mod is not None and hasattr(mod, n)]
    return tuple(classes)


def os_errno(exc: OSError) -> int | None:
    """The errno of an OSError, also when a library only wrote it into the message (pyarrow)."""
    if exc.errno is not None:
        return exc.errno
    for cls, code in ((FileNotFoundError, errno.ENOENT), (PermissionError, errno.EACCES),
                      (IsADirectoryError, errno.EISDIR), (NotADirectoryError, errno.ENOTDIR),
                      (FileExistsError, errno.EEXIST)):
        if isinstance(exc, cls):
            return code
    found = _ERRNO_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def _raised_here_on_purpose(exc: BaseException) -> bool:
    """A plain ValueError whose innermost frame is a ``raise`` statement of this package."""
    if type(exc) is not ValueError or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = Path(tb.tb_frame.f_code.co_filename).resolve()
    if PACKAGE_DIR not in filename.parents:
        return False
    return linecache.getline(str(filename), tb.tb_lineno).strip().startswith("raise")


def is_user_error(exc: BaseException) -> bool:
    """True for bad input (one clear line), False for a bug (keep the traceback)."""
    if isinstance(exc, UserError) or isinstance(exc, _foreign_classes()):
        return True
    if isinstance(exc, OSError):
        return os_errno(exc) in USER_ERRNOS
    return _raised_here_on_purpose(exc)


def describe(exc: BaseException, outputs: list[str] | None = None) -> str:
    """One line for a user error. An OSError names its path, or the command's outputs when the
    library that failed did not say which file it was writing (pyarrow on a full disk)."""
    if isinstance(exc, OSError):
        code = os_errno(exc)
        named = exc.filename or (exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str)
                                 and code == errno.ENOENT else None)
        path = str(named) if named else ", ".join(outputs or []) or "an output"
        if exc.filename2:
            path += f" -> {exc.filename2}"
        reason = {errno.ENOSPC: "cannot write {}: no space left on the disk",
                  errno.EDQUOT: "cannot write {}: disk quota exceeded",
                  errno.EROFS: "cannot write {}: the file system is read-only",
                  errno.EACCES: "permission denied: {}",
                  errno.EPERM: "operation not permitted: {}",
                  errno.ENOENT: "no such file or folder: {}",
                  errno.ENOTDIR: "{}: a part of the path is a file, not a folder",
                  errno.EISDIR: "{} is a folder, not a file",
                  errno.EEXIST: "{} exists already",
                  errno.ENAMETOOLONG: "file name too long: {}"}.get(code, "{}: " + (exc.strerror or str(exc)))
        if code == errno.EEXIST and exc.filename and Path(exc.filename).is_file():
            return f"{path} is a file, not a folder"
        return reason.format(path)
    yaml_module = sys.modules.get("yaml")
    if yaml_module is not None and isinstance(exc, yaml_module.YAMLError):
        return yaml_message(exc, "<yaml>")
    return str(exc)


def yaml_message(exc: yaml.YAMLError, path: str | Path) -> str:
    """``config.yaml:12:5: invalid YAML at line 12, column 5: mapping values are not allowed here``."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = getattr(exc, "context_mark", None)
    if context and where is not None and where is not mark:
        # Where the unclosed bracket or block began: often the line to fix.
        context += f" that began at line {where.line + 1}, column {where.column + 1}"
    detail = f"{problem} ({context})" if context else problem
    if mark is None:
        return f"{path}: invalid YAML: {detail}"
    line, column = mark.line + 1, mark.column + 1
    return f"{path}:{line}:{column}: invalid YAML at line {line}, column {column}: {detail}"


def load_yaml(path: str | Path, error: type[Exception] = YamlSyntaxError, what: str = "file") -> Any:
    """Parse a YAML file; a syntax error becomes ``error`` naming the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    return parse_yaml(text, path, error)


def parse_yaml(text: str, path: str | Path, error: type[Exception] = YamlSyntaxError) -> Any:
    """``yaml.safe_load`` with libyaml's parser where PyYAML has it (about ten times faster: the
    Snakefile parses every architecture file of the grid); a mistake is then parsed again by the
    pure-Python parser, whose message names the line and column in the words users know."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(yaml_message(exc, path)) from None


def json_argument(text: str | None, name: str, kind: type = dict) -> Any:
    """Parse a command-line JSON value; errors name the argument (``--protocol``)."""
    if text is None or text == "":
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
                         f"{text[:80]!r}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{name}: expected a JSON {'object' if kind is dict else kind.__name__}, "
                         f"not {type(value).__name__} {text[:80]!r}")
    return value


def json_file_of(exc: json.JSONDecodeError, candidates: list[str]) -> str | None:
    """Which of the files a command was given holds the text that failed to parse as JSON."""
    for path in candidates:
        try:
            if Path(path).is_file() and Path(path).read_text(errors="replace") == exc.doc:
                return path
        except OSError:
            continue
    return None


def check_config_file(path: str | Path, workflow_dir: str | Path, given: bool = False) -> None:
    """Raise ``ConfigFileMissing`` unless the workflow's config file exists, saying where it was looked
    for: Snakemake reads ``config/config.yaml`` from the folder it runs in, not beside the Snakefile, so
    ``snakemake -s <checkout>/Snakefile`` from another folder finds none (``--directory`` fixes it)."""
    path = Path(path)
    if path.is_file():
        return
    here, checkout = Path.cwd().resolve(), Path(workflow_dir).resolve()
    where = f"{path}: no such config file in {here} (the folder Snakemake runs in)"
    if given:
        raise ConfigFileMissing(f"{where}; check the path given with --configfile")
    if here != checkout and (checkout / path).is_file():
        raise ConfigFileMissing(f"{where}, which is where Snakemake reads it from, not from beside the "
                                f"Snakefile; run from {checkout}, or add "
                                f"--directory {checkout} (results/ "
                                f"and logs/ are then written there), or give --configfile "
                                f"{checkout / path}")
    raise ConfigFileMissing(f"{where}; restore it (git checkout {path}) or give one with --configfile PATH")
