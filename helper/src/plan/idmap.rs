//! The uid/gid maps of a sandbox's user namespace.
//!
//! With a subordinate range, the user's own id maps to itself (files the app writes in shared
//! folders stay the user's) and the other inside ids, from 0 upwards, come from the range.
//! Without one, only the user's own id exists inside.

use serde::{Deserialize, Serialize};

use super::host::SubRange;

/// One line of `/proc/PID/uid_map`: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Ranges kept at most (the kernel allows 340 lines; nobody needs that many).
const MAX_RANGES: usize = 8;

/// The map for one id: `own` maps to itself, the ranges fill inside ids from 0, skipping `own`.
pub fn build_map(own: u32, ranges: &[SubRange]) -> Vec<MapLine> {
    let mut lines = vec![MapLine {
        inside: own,
        outside: own,
        count: 1,
    }];
    let mut next_inside: u32 = 0;
    for range in ranges.iter().take(MAX_RANGES) {
        // A range that contains the user's own id would map it twice: skip that part.
        let mut outside = range.start;
        let mut left = range.count;
        while left > 0 {
            if next_inside == own {
                next_inside = next_inside.saturating_add(1);
            }
            // Stop this piece at `own` on the inside.
            let room = if next_inside < own {
                own - next_inside
            } else {
                u32::MAX - next_inside
            };
            let count = left.min(room);
            if count == 0 {
                break;
            }
            if !(outside <= own && own < outside.saturating_add(count)) {
                lines.push(MapLine {
                    inside: next_inside,
                    outside,
                    count,
                });
            }
            next_inside = next_inside.saturating_add(count);
            outside = outside.saturating_add(count);
            left -= count;
        }
    }
    lines.sort_by_key(|l| l.inside);
    lines
}

/// Arguments for newuidmap/newgidmap after the pid: `inside outside count` triples.
pub fn tool_args(lines: &[MapLine]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| {
            [
                l.inside.to_string(),
                l.outside.to_string(),
                l.count.to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(inside: u32, outside: u32, count: u32) -> MapLine {
        MapLine {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn own_id_maps_to_itself_and_the_range_fills_around_it() {
        let map = build_map(
            1000,
            &[SubRange {
                start: 100000,
                count: 65536,
            }],
        );
        assert_eq!(
            map,
            [
                line(0, 100000, 1000),
                line(1000, 1000, 1),
                line(1001, 101000, 64536)
            ]
        );
        assert_eq!(map.iter().map(|l| l.count).sum::<u32>(), 65537);
    }

    #[test]
    fn small_range_below_own_id() {
        let map = build_map(
            1000,
            &[SubRange {
                start: 200000,
                count: 10,
            }],
        );
        assert_eq!(map, [line(0, 200000, 10), line(1000, 1000, 1)]);
    }

    #[test]
    fn no_range_is_the_single_id() {
        assert_eq!(build_map(1000, &[]), [line(1000, 1000, 1)]);
    }

    #[test]
    fn several_ranges_follow_each_other() {
        let map = build_map(
            5,
            &[
                SubRange {
                    start: 100,
                    count: 3,
                },
                SubRange {
                    start: 500,
                    count: 4,
                },
            ],
        );
        assert_eq!(
            map,
            [
                line(0, 100, 3),
                line(3, 500, 2),
                line(5, 5, 1),
                line(6, 502, 2)
            ]
        );
    }

    #[test]
    fn tool_args_are_triples() {
        assert_eq!(
            tool_args(&[line(0, 100, 3), line(5, 5, 1)]),
            ["0", "100", "3", "5", "5", "1"]
        );
    }
}
