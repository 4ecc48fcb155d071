"""Where the demo's kitchens and customers are, and the route a demo rider rides between them."""

from __future__ import annotations

import math

Point = tuple[float, float]  # (lat, lng)

# Bengaluru: each demo kitchen, and each demo customer's door (the orders' delivery_lat/lng).
KITCHENS: dict[str, Point] = {
    "spice-garden": (12.9716, 77.5946),
    "green-bowl": (12.9592, 77.6974),
}
HOMES: dict[str, Point] = {
    "alice": (12.9352, 77.6245),
    "bob": (12.9784, 77.6408),
}
DEFAULT_KITCHEN: Point = KITCHENS["spice-garden"]


def route(start: Point, end: Point, steps: int) -> list[Point]:
    """`steps` + 1 points from start to end: along one street, then the cross street, with a
    slight bend, as a rider would go (never a straight line through the blocks)."""
    steps = max(1, steps)
    corner = (start[0], end[1])  # go east-west first, then north-south
    first = abs(end[1] - start[1])
    second = abs(end[0] - start[0])
    total = first + second or 1.0
    points: list[Point] = []
    for i in range(steps + 1):
        walked = total * i / steps
        if walked <= first:
            t = walked / first if first else 1.0
            lat = start[0] + (corner[0] - start[0]) * t
            lng = start[1] + (corner[1] - start[1]) * t
            lat += 0.0012 * math.sin(math.pi * t)  # the street bends a little
        else:
            t = (walked - first) / second if second else 1.0
            lat = corner[0] + (end[0] - corner[0]) * t
            lng = corner[1] + (end[1] - corner[1]) * t
        points.append((round(lat, 6), round(lng, 6)))
    return points


def heading(a: Point, b: Point) -> float:
    """Degrees clockwise from north, from a to b (0 when they are the same point)."""
    if a == b:
        return 0.0
    y = math.sin(math.radians(b[1] - a[1])) * math.cos(math.radians(b[0]))
    x = math.cos(math.radians(a[0])) * math.sin(math.radians(b[0])) - math.sin(
        math.radians(a[0])
    ) * math.cos(math.radians(b[0])) * math.cos(math.radians(b[1] - a[1]))
    return round((math.degrees(math.atan2(y, x)) + 360.0) % 360.0, 1)
