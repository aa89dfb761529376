"""The command line starts without torch: help and bad options never import the library's heavy part."""

from tests.cli_probe import run_command


def test_help_does_not_import_torch(tmp_path):
    for args in (["--help"], [], ["show", "--help"], ["report", "--help"], ["run", "--help"]):
        code, heavy, output = run_command(args, tmp_path)
        assert code in (0, 2) and "Usage" in output, (args, output)
        assert heavy == [], (args, heavy)


def test_argument_errors_exit_2_without_torch(tmp_path):
    cases = {
        ("show",): "Missing argument",
        ("show", "missing.gdr"): "no run file",
        ("diagnose", "missing.gdr"): "no run file",
        ("report", "missing.gdr"): "no run file",
        ("plot", "missing.gdr", "--kind", "nope", "-o", "a.png"): "unknown figure kind",
        ("plot", "missing.gdr", "-o", "a.png"): "no run file",
        ("checkup", "pkg.mod:f", "--steps", "0"): "--steps must be between",
        ("compare", "pkg.mod:f", "--seeds", "0"): "--seeds must be between",
        ("run", "train.py", "--every", "0"): "--every must be >= 1",
        ("run", "missing.py"): "no training script",
        ("demo", "--epochs", "0"): "--epochs must be between",
        ("no-such-command",): "No such command",
    }
    for args, message in cases.items():
        code, heavy, output = run_command(list(args), tmp_path)
        assert code == 2 and message in output, (args, code, output)
        assert "Traceback" not in output, (args, output)
        assert heavy == [], (args, heavy)
