"""The agent's install stays light: importing and starting it loads no controller-side stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "fastapi", "sqlalchemy", "uvicorn", "starlette", "pydantic_settings", "onnx",
         "sklearn", "controller", "simulators")


def test_agent_imports_no_heavy_packages() -> None:
    code = (
        "import sys, agent.app, agent.cli, agent.config, agent.runtimes, agent.updater, agent.download\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"agent pulled in: {out.stdout.strip()}"


def test_agent_verifies_signatures_without_cryptography() -> None:
    code = (
        "import sys, agent.app\n"
        "from agent.trust import PinnedKey\n"
        "from shared.messages import Command\n"
        "pem, signed = sys.stdin.read().split('\\n===\\n')\n"
        "PinnedKey(pem).verify(Command.model_validate_json(signed))\n"
        "assert 'cryptography' not in sys.modules, 'cryptography loaded'\n"
        "print('ok')\n"
    )
    from shared import signing
    from shared.messages import Command, CommandKind

    key = signing.generate_private_key()
    signed = signing.sign(Command(device_id="d", command_id="c", kind=CommandKind.PING), key)
    stdin = signing.public_key_pem(key.public_key()) + "\n===\n" + signed.model_dump_json()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, input=stdin)
    assert out.stdout.strip() == "ok", out.stderr


def test_cli_help_does_not_load_heavy_packages() -> None:
    code = (
        "import sys, contextlib, io, edgefleet_cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: edgefleet_cli.main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print(','.join(m for m in ('torch', 'tensorflow', 'fastapi', 'sqlalchemy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
