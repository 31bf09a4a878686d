import os
import textwrap

import pytest


@pytest.fixture
def fanroot(tmp_path):
    """A throwaway root; ``write(rel, text)`` puts a file under it with mode 0600."""

    class Root:
        path = str(tmp_path)

        def write(self, rel, text, mode=0o600):
            full = tmp_path / rel
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_text(textwrap.dedent(text).lstrip("\n"))
            os.chmod(full, mode)
            return str(full)

        def fan(self, text, name="10-fan.yaml", layer="etc", mode=0o600):
            return self.write(f"{layer}/netplan/fan.d/{name}", text, mode)

    return Root()
