"""Access rules of spec §7 and the rotation rule of §4.1, as pure functions."""

from __future__ import annotations

from .access import RoomInfo, Roster
from .errors import not_a_member, not_in_roster
from .model import KeyRecord

_ROSTER_RULES: dict[str, frozenset[str] | None] = {
    "both": frozenset({"both"}),
    "either": frozenset({"from", "to", "both"}),
    "item": frozenset({"none", "from", "to", "both"}),
    "none": None,
}


def roster_needed(rule: str) -> bool:
    return _ROSTER_RULES[rule] is not None


def check_roster(owner: str, contact: str, roster: Roster, rule: str) -> None:
    """`contact` must stand in `owner`'s roster as `rule` asks; raises not-in-roster."""
    wanted = _ROSTER_RULES[rule]
    if wanted is None:
        return
    item = roster.get(contact)
    if item is None:
        raise not_in_roster(f"{contact} is not in the roster of {owner}")
    if item.subscription not in wanted:
        need = "a mutual subscription" if rule == "both" else "a subscription"
        raise not_in_roster(
            f"{contact} is in the roster of {owner} with subscription "
            f"'{item.subscription}', and {need} is required"
        )


def check_room(requester: str, room: str, info: RoomInfo, allow_occupants: bool) -> None:
    """The requester must be owner/admin/member (or, if allowed, an occupant)."""
    affiliation = info.affiliations.get(requester)
    if affiliation == "outcast":
        raise not_a_member(f"{requester} is banned from {room}")
    if requester in info.members:
        return
    if allow_occupants and info.occupants is not None and requester in info.occupants:
        return
    raise not_a_member(f"{requester} is not a member of {room}")


def needs_rotation(
    key: KeyRecord, now_ms: int, max_age_s: float, members: frozenset[str] | None
) -> bool:
    """A current key is replaced when too old, or (rooms) when someone who was a
    member when it was made is no longer one."""
    if now_ms - key.created_ms >= max_age_s * 1000:
        return True
    return bool(members is not None and key.members is not None and key.members - members)
