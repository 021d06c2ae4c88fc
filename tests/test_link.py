"""The link (firmware_bridge/link.py): port advice, reconnect with backoff on both ends."""

from __future__ import annotations

import errno

import pytest
import serial

from edgekd.errors import UserError
from firmware_bridge import link


def test_backoff_doubles_up_to_its_ceiling_and_starts_over_on_reset():
    backoff = link.Backoff(0.5, 5.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_reader_reopens_with_backoff_and_says_so():
    attempts, logged, slept = [], [], []

    def open_port(first):
        attempts.append(first)
        if len(attempts) < 4:
            raise serial.SerialException("could not open port: device gone")
        return "port"

    assert link.reopen(open_port, logged.append, slept.append, give_up=lambda: False) == "port"
    assert attempts == [False] * 4 and slept == [0.5, 1.0, 2.0]
    assert logged[0] == "no link yet (could not open port: device gone); next try in 0.5 s"
    assert logged[-1] == "link back"


def test_reader_stops_reopening_when_told_and_passes_on_what_is_not_a_link_error():
    def never(first):
        raise OSError(errno.ENOENT, "gone")

    checks = iter([False, False, True])
    slept = []
    assert link.reopen(never, lambda m: None, slept.append, give_up=lambda: next(checks)) is None
    assert slept == [0.5, 1.0]

    def broken(first):
        raise RuntimeError("a bug, not a port")

    with pytest.raises(RuntimeError):
        link.reopen(broken, lambda m: None, lambda s: None, give_up=lambda: False)


def test_reader_first_open_is_one_clear_line_and_later_ones_raise_for_a_retry(tmp_path):
    open_port = link.reader_opener(str(tmp_path / "ttyNOPE0"), 115200)
    with pytest.raises(UserError, match="ttyNOPE0: cannot open it .*; no such port: plug the device in"):
        open_port(first=True)
    with pytest.raises(serial.SerialException):
        open_port(first=False)


@pytest.mark.parametrize(
    "error, advice",
    [
        (OSError(errno.EACCES, "Permission denied"), "no permission: add your user to the dialout group"),
        (serial.SerialException("[Errno 16] Device or resource busy"), "the port is busy: close the other program"),
        (serial.SerialException("Could not open port socket://h:1: [Errno 111] Connection refused"), "nothing listens"),
        (OSError(errno.ENOENT, "No such file or directory"), "no such port: plug the device in"),
        (serial.SerialException("something else"), "check the device path or URL"),
        (ValueError("unknown URL scheme"), "not a serial port setting pyserial accepts"),
    ],
)
def test_port_advice_names_the_port_and_the_fix(error, advice):
    line = link.port_advice("/dev/ttyX", error)
    assert line.startswith("/dev/ttyX: ") and advice in line and "\n" not in line


def test_serial_link_loses_bytes_while_down_and_reopens_at_most_once_per_interval(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(link.time, "monotonic", lambda: now[0])
    writer = link.SerialLink("loop://")
    opened = []

    def fail_to_open():
        opened.append(now[0])
        raise UserError("loop://: still gone")

    def unplugged(data):
        raise serial.SerialException("device disconnected")

    monkeypatch.setattr(writer._serial, "write", unplugged)
    assert writer.write(b"a") is False  # the write fails: the port is closed, the bytes lost
    monkeypatch.setattr(writer, "_open", fail_to_open)
    assert writer.write(b"b") is False and opened == [100.0]  # reopen tried at once
    now[0] += 0.5
    assert writer.write(b"c") is False and opened == [100.0]  # not again within REOPEN_S
    now[0] += 0.6
    assert writer.write(b"d") is False and opened == [100.0, 101.1]
    now[0] += 5  # the device is back
    reopened = link.SerialLink._open(writer)
    monkeypatch.setattr(writer, "_open", lambda: reopened)
    assert writer.write(b"back") is True and reopened.read(4) == b"back"
    writer.close()
