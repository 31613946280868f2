"""The record store's SQLite connections under concurrency."""

from __future__ import annotations

import threading

from harvester.store import Store


def test_stores_opened_at_once_on_a_new_file(tmp_path):
    """Two harvests starting together on a new data directory both open the store.
    Switching the new file to WAL raced ("database is locked", about one round
    in a hundred with four threads); 300 rounds catch that nearly always."""
    errors: list[BaseException] = []

    def open_one(path):
        try:
            with Store(path) as store:
                store.conn.execute("SELECT count(*) FROM records").fetchone()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    for round_ in range(300):
        path = tmp_path / f"round-{round_}" / "harvester.sqlite"
        threads = [threading.Thread(target=open_one, args=(path,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
