"""The CLI's quiet mode keeps stderr to kgen's own lines on every CPU (cli/quiet.py).

On CPUs where oneDNN's custom operations are on by default (AVX512-VNNI, AVX512-BF16, AMX),
TensorFlow's library writes absl lines to file descriptor 2 while it loads, whatever
TF_CPP_MIN_LOG_LEVEL says. The first two tests write such lines themselves, natively, so they
check the filter on any machine; the last one checks a real kgen process on this one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_kgen

ABSL_LINES = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
              "I0000 00:00:1796216020.235150   24072 port.cc:153] oneDNN custom operations are on. You may see...\n"
              "W0000 00:00:1796216020.235151   24072 cpu_feature_guard.cc:227] This TensorFlow binary is ...\n")
KEPT_LINES = ("E0000 00:00:1796216020.235152   24072 loader.cc:1] an error line is kept\n"
              "a line that is not absl's\n")


def python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.mark.one_backend
def test_the_filter_drops_absl_info_and_warning_lines_written_natively_and_keeps_the_rest_in_order(tmp_path):
    result = python(f"""
        import os, sys
        from cli.quiet import native_stderr_filtered
        with native_stderr_filtered():
            os.write(2, {ABSL_LINES!r}.encode())
            print("python's own stderr line", file=sys.stderr)
            os.write(2, {KEPT_LINES!r}.encode())
        os.write(2, b"after the block, unfiltered: " + {ABSL_LINES.splitlines()[1]!r}.encode() + b"\\n")
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["python's own stderr line", *KEPT_LINES.splitlines(),
                                          "after the block, unfiltered: " + ABSL_LINES.splitlines()[1]]


@pytest.mark.one_backend
def test_the_first_import_of_a_noisy_package_is_filtered_even_after_a_find_spec_lookup(tmp_path):
    """torch calls importlib.util.find_spec("tensorflow") before anything imports it: a lookup must not use
    up the filter. The module keeps its real loader."""
    (tmp_path / "noisy").mkdir()
    (tmp_path / "noisy" / "__init__.py").write_text(f"import os\nos.write(2, {(ABSL_LINES + KEPT_LINES)!r}.encode())\n")
    result = python("""
        import importlib.util, sys
        from cli.quiet import filter_native_startup_lines
        filter_native_startup_lines(("noisy",))
        assert importlib.util.find_spec("noisy") is not None
        import noisy
        print(type(noisy.__loader__).__name__, type(noisy.__spec__.loader).__name__)
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == KEPT_LINES.splitlines()
    assert result.stdout.split() == ["SourceFileLoader", "SourceFileLoader"]


def test_a_kgen_command_that_loads_the_backend_prints_only_its_own_line(tmp_path):
    result = run_kgen("evaluate", str(tmp_path / "no-run"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"kgen: error: no run at {tmp_path / 'no-run'}"]
