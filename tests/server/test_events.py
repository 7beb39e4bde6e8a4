"""The event bus (server.events): every request publishes one, so who hears what is decided per type."""

from __future__ import annotations

from server.events import CatalogReloaded, EventBus, TunnelChanged


def test_a_subscriber_hears_only_the_kinds_it_named_and_stops_hearing_once_unsubscribed() -> None:
    bus = EventBus()
    everything: list[object] = []
    tunnels: list[object] = []
    bus.subscribe(everything.append)
    stop = bus.subscribe(tunnels.append, TunnelChanged)
    up, reloaded = TunnelChanged("up", public_url="https://a.example"), CatalogReloaded(3)
    bus.publish(up)
    bus.publish(reloaded)
    assert everything == [up, reloaded] and tunnels == [up]
    stop()
    bus.publish(up)
    assert everything == [up, reloaded, up] and tunnels == [up]
    late: list[object] = []
    bus.subscribe(late.append, CatalogReloaded)  # a type already routed learns of the newcomer
    bus.publish(reloaded)
    assert late == [reloaded]


def test_a_failing_subscriber_does_not_keep_the_event_from_the_others() -> None:
    bus = EventBus()
    heard: list[object] = []

    def broken(_event: object) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(heard.append)
    event = CatalogReloaded(1)
    bus.publish(event)
    assert heard == [event]
