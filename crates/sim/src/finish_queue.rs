//! An indexed binary min-heap of predicted flow completions.
//!
//! Each running flow has at most one entry, keyed by (instant, flow id). A rate change
//! moves the flow's entry in place, so the heap never contains stale predictions and its
//! size stays the number of flows with a prediction.

use crate::flow::FlowId;

/// Marks a flow without an entry in [`FinishQueue::position`].
const ABSENT: usize = usize::MAX;

/// [`FinishQueue::set_all`] rebuilds the heap when at least one entry in this many
/// changes: a rebuild costs about 2n comparisons, moving k entries about k·log₂(n).
const REBUILD_DIVISOR: usize = 8;

/// Predicted completions as (instant in microseconds, flow), earliest first and ties
/// to the lower flow id.
#[derive(Debug, Default)]
pub(crate) struct FinishQueue {
    heap: Vec<(u64, FlowId)>,
    /// Per flow id: its index in `heap`, or [`ABSENT`].
    position: Vec<usize>,
}

impl FinishQueue {
    /// Returns the earliest entry without removing it.
    pub(crate) fn peek(&self) -> Option<(u64, FlowId)> {
        self.heap.first().copied()
    }

    /// Sets the predicted completion of `flow`, replacing its previous entry.
    pub(crate) fn set(&mut self, flow: FlowId, at: u64) {
        if flow >= self.position.len() {
            self.position.resize(flow + 1, ABSENT);
        }
        let index = self.position[flow];
        if index == ABSENT {
            self.heap.push((at, flow));
            let last = self.heap.len() - 1;
            self.position[flow] = last;
            self.sift_up(last);
            return;
        }
        let old = self.heap[index].0;
        self.heap[index].0 = at;
        if at < old {
            self.sift_up(index);
        } else {
            self.sift_down(index);
        }
    }

    /// Sets the predicted completions of many flows at once, each as [`FinishQueue::set`]
    /// would. When they are a large part of the queue (a recompute over one component
    /// that spans most flows), it writes them in place and rebuilds the heap in O(n)
    /// instead of moving each entry in O(log n).
    pub(crate) fn set_all(&mut self, predictions: &[(FlowId, u64)]) {
        if predictions.len() < REBUILD_DIVISOR * 4 || predictions.len() * REBUILD_DIVISOR < self.heap.len() {
            for &(flow, at) in predictions {
                self.set(flow, at);
            }
            return;
        }
        for &(flow, at) in predictions {
            if flow >= self.position.len() {
                self.position.resize(flow + 1, ABSENT);
            }
            match self.position[flow] {
                ABSENT => {
                    self.position[flow] = self.heap.len();
                    self.heap.push((at, flow));
                }
                index => self.heap[index].0 = at,
            }
        }
        for index in (0..self.heap.len() / 2).rev() {
            self.sift_down(index);
        }
    }

    /// Removes the entry of `flow`, if it has one.
    pub(crate) fn remove(&mut self, flow: FlowId) {
        let Some(&index) = self.position.get(flow) else {
            return;
        };
        if index == ABSENT {
            return;
        }
        self.position[flow] = ABSENT;
        let last = self.heap.len() - 1;
        if index == last {
            self.heap.pop();
            return;
        }
        self.heap.swap_remove(index);
        let moved = self.heap[index].1;
        self.position[moved] = index;
        // The moved entry came from the bottom, so it may belong above or below.
        self.sift_up(index);
        self.sift_down(self.position[moved]);
    }

    fn sift_up(&mut self, mut index: usize) {
        while index > 0 {
            let parent = (index - 1) / 2;
            if self.heap[index] >= self.heap[parent] {
                break;
            }
            self.swap(index, parent);
            index = parent;
        }
    }

    fn sift_down(&mut self, mut index: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * index + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right] < self.heap[left] { right } else { left };
            if self.heap[child] >= self.heap[index] {
                break;
            }
            self.swap(index, child);
            index = child;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a].1] = a;
        self.position[self.heap[b].1] = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the queue against a sorted list after every operation of a seeded
    /// sequence of sets and removals.
    #[test]
    fn queue_matches_sorted_list() {
        let mut queue = FinishQueue::default();
        let mut expected: Vec<Option<u64>> = vec![None; 40];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let flow = (state >> 33) as usize % expected.len();
            if (state >> 20) % 4 == 0 {
                queue.remove(flow);
                expected[flow] = None;
            } else {
                // Few distinct instants, so ties between flows are common.
                let at = (state >> 40) % 16;
                queue.set(flow, at);
                expected[flow] = Some(at);
            }
            let least = expected
                .iter()
                .enumerate()
                .filter_map(|(flow, at)| at.map(|at| (at, flow)))
                .min();
            assert_eq!(queue.peek(), least);
        }
    }

    /// Checks that bulk updates, small and large, keep the queue's earliest entry
    /// equal to a sorted list's.
    #[test]
    fn set_all_matches_sorted_list() {
        let mut queue = FinishQueue::default();
        let mut expected: Vec<Option<u64>> = vec![None; 200];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..300 {
            // Alternate small batches (moved entry by entry) and large ones (rebuilt).
            let size = if round % 3 == 0 { 150 } else { 5 };
            let mut batch = Vec::new();
            for _ in 0..size {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let flow = (state >> 33) as usize % expected.len();
                let at = (state >> 40) % 64;
                if batch.iter().all(|&(other, _)| other != flow) {
                    batch.push((flow, at));
                    expected[flow] = Some(at);
                }
            }
            queue.set_all(&batch);
            let removed = (state >> 20) as usize % expected.len();
            queue.remove(removed);
            expected[removed] = None;
            let least = expected
                .iter()
                .enumerate()
                .filter_map(|(flow, at)| at.map(|at| (at, flow)))
                .min();
            assert_eq!(queue.peek(), least, "round {round}, batch of {size}");
        }
    }

    #[test]
    fn remove_absent_flow_is_noop() {
        let mut queue = FinishQueue::default();
        queue.remove(3);
        queue.set(1, 10);
        queue.remove(7);
        queue.remove(1);
        queue.remove(1);
        assert_eq!(queue.peek(), None);
    }
}
