"""cgls and cgtop take systemd's boolean spellings, and a bad one is one line naming the option."""

import pytest

from nsdash.cli import main


@pytest.mark.parametrize(("argv", "option"), [
    (["cgls", "--xattr=maybe"], "--xattr"),
    (["cgls", "--cgroup-id=2"], "--cgroup-id"),
    (["cgtop", "-b", "-n", "1", "--recursive=perhaps"], "--recursive"),
])
def test_bad_boolean_is_one_line_naming_the_option(argv, option, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"invalid {option} value" in err and "use yes or no" in err


def test_systemd_spellings_are_accepted(capsys):
    assert main(["cgls", "--xattr=off", "--cgroup-id=false", "/"]) == 0
    assert capsys.readouterr().out.startswith("Control group /")
