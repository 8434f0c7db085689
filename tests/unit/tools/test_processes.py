"""free_port: the ports handed to servers we start."""

from __future__ import annotations

import socket

import pytest

from chatlimit.tools import processes
from chatlimit.tools.processes import PORT_FLOOR, claim, ephemeral_range, free_port


def test_free_port_is_below_the_range_outgoing_connections_take_their_ports_from() -> None:
    low, _ = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert all(PORT_FLOOR <= port < low for port in ports), ports


def test_free_port_never_hands_out_the_same_port_twice_in_a_process() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_free_port_skips_a_port_something_listens_on() -> None:
    low, _ = ephemeral_range()
    listeners = []
    try:
        # Take most of the range: a pick that ignored listeners would land on one of them.
        for port in range(PORT_FLOOR, min(low, PORT_FLOOR + 2000)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen()
            listeners.append(sock)
        taken = {s.getsockname()[1] for s in listeners}
        picks = [free_port() for _ in range(100)]
        assert not taken & set(picks)
    finally:
        for sock in listeners:
            sock.close()


def test_free_port_never_hands_out_a_port_the_process_was_told_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_handed_out", set())  # this test's claims stay here
    low, _ = ephemeral_range()
    told = list(range(PORT_FLOOR, low))[::2]  # every other port of the range
    claim(*told)
    picks = {free_port() for _ in range(100)}
    assert not picks & set(told)
