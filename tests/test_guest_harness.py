"""The host side of the 7.x guest harness (tests/helpers/guest.py) that can be
checked without booting: reading results back from the serial stream, and
the one-line failures a test gets when the guest cannot run."""

from __future__ import annotations

import pytest

from helpers import guest


def _stream(token: str) -> str:
    m = f"@@{token}"
    return "".join([
        f"{m} boot 7.2.13+deb14-amd64 2.61\n",
        f"{m} stdout one\n", '{"event": "x", "n": 1}\n', "plain line\n",
        f"{m} stderr one\n", "warning: something\n",
        f"{m} end one 0 2.70 3.20\n",
        # a program's own output that looks like a marker of another boot
        f"{m} stdout two\n", "@@0000 end fake 0\n",
        f"{m} stderr two\n",
        f"{m} end two 139 3.30 3.40\n",
        f"{m} done 3.50\n",
    ])


def test_results_are_read_back_per_program():
    release, booted, results, done = guest.parse_results(_stream("abcd"), "abcd")
    assert (release, booted, done) == ("7.2.13+deb14-amd64", 2.61, True)
    one, two = results["one"], results["two"]
    assert one.returncode == 0 and one.events() == [{"event": "x", "n": 1}]
    assert one.stderr == "warning: something\n" and one.seconds == 0.5
    assert two.returncode == 139 and two.signal == 11 and two.stdout == "@@0000 end fake 0\n"
    assert set(results) == {"one", "two"}


def test_an_unfinished_batch_is_noticed():
    text = _stream("abcd").split("@@abcd end two")[0]
    _, _, results, done = guest.parse_results(text, "abcd")
    assert not done and set(results) == {"one"}


def test_init_script_quotes_arguments_and_environment():
    prog = guest.GuestProgram("p1", ("prog", "it's", "a b"), {}, {"GLIBC_TUNABLES": "x=1:y='2'"}, 7)
    script = guest.init_script([prog], "tok")
    assert "timeout -s KILL 7 '/p/p1/prog' 'it'\\''s' 'a b'" in script
    assert "GLIBC_TUNABLES='x=1:y='\\''2'\\'''" in script
    assert script.rstrip().endswith("poweroff -f")


def test_missing_guest_fails_each_test_with_one_line():
    results = guest.GuestResults(None, "qemu-system-x86_64 not found: install qemu-system-x86", None, [])
    with pytest.raises(pytest.fail.Exception) as info:
        results["anything"]
    assert str(info.value) == "qemu-system-x86_64 not found: install qemu-system-x86"
    with pytest.raises(pytest.fail.Exception):
        results.image


def test_a_program_no_builder_registered_is_a_failure_not_a_key_error():
    results = guest.GuestResults({}, None, None, [])
    with pytest.raises(pytest.fail.Exception) as info:
        results["nope"]
    assert "@guest_programs" in str(info.value)
