//! Undo/redo of label edits with a memory bound. Every edit — a brush stroke, clearing a label, or
//! (later) a network's result — is one [`Step`]: the voxels it changed with their old and new
//! labels, so undo and redo cost the size of the change, not of the volume.

use std::collections::VecDeque;

/// One voxel's label before and after an edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub index: u32,
    pub old: u16,
    pub new: u16,
}

/// Bytes one recorded change costs.
pub const CHANGE_BYTES: usize = std::mem::size_of::<Change>();

#[derive(Clone, Debug)]
pub struct Step {
    /// What the user did, for the Edit menu ("Brush", "Clear label 2").
    pub name: String,
    pub changes: Vec<Change>,
}

impl Step {
    fn bytes(&self) -> usize {
        self.changes.len() * CHANGE_BYTES + self.name.len()
    }
}

/// Done steps (newest last) and undone ones (redo order, newest last). When the recorded changes
/// pass `limit_bytes`, the oldest steps are forgotten; a new step clears the redo list.
#[derive(Debug)]
pub struct UndoStack {
    done: VecDeque<Step>,
    undone: Vec<Step>,
    bytes: usize,
    limit_bytes: usize,
    /// Steps dropped to stay within the memory bound (shown to the user).
    pub forgotten: usize,
}

impl UndoStack {
    pub fn new(limit_bytes: usize) -> Self {
        UndoStack {
            done: VecDeque::new(),
            undone: Vec::new(),
            bytes: 0,
            limit_bytes,
            forgotten: 0,
        }
    }

    /// Records a step that has already been applied. Empty steps are not recorded.
    pub fn push(&mut self, step: Step) {
        if step.changes.is_empty() {
            return;
        }
        for s in self.undone.drain(..) {
            self.bytes -= s.bytes();
        }
        self.bytes += step.bytes();
        self.done.push_back(step);
        // Keep at least the newest step even when it alone is over the bound.
        while self.bytes > self.limit_bytes && self.done.len() > 1 {
            let old = self.done.pop_front().expect("len > 1");
            self.bytes -= old.bytes();
            self.forgotten += 1;
        }
    }

    /// Takes back the newest step: its voxels get their old labels. Returns the step's name.
    pub fn undo(&mut self, labels: &mut [u16]) -> Option<(String, &[Change])> {
        let step = self.done.pop_back()?;
        for c in step.changes.iter().rev() {
            labels[c.index as usize] = c.old;
        }
        self.undone.push(step);
        let s = self.undone.last().expect("just pushed");
        Some((s.name.clone(), &s.changes))
    }

    /// Applies the newest undone step again.
    pub fn redo(&mut self, labels: &mut [u16]) -> Option<(String, &[Change])> {
        let step = self.undone.pop()?;
        for c in &step.changes {
            labels[c.index as usize] = c.new;
        }
        self.done.push_back(step);
        let s = self.done.back().expect("just pushed");
        Some((s.name.clone(), &s.changes))
    }

    pub fn can_undo(&self) -> bool {
        !self.done.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.undone.is_empty()
    }

    pub fn undo_name(&self) -> Option<&str> {
        self.done.back().map(|s| s.name.as_str())
    }

    pub fn redo_name(&self) -> Option<&str> {
        self.undone.last().map(|s| s.name.as_str())
    }

    /// Bytes held by the recorded steps.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, changes: &[(u32, u16, u16)], labels: &mut [u16]) -> Step {
        for &(i, _, new) in changes {
            labels[i as usize] = new;
        }
        Step {
            name: name.into(),
            changes: changes
                .iter()
                .map(|&(index, old, new)| Change { index, old, new })
                .collect(),
        }
    }

    #[test]
    fn undo_redo_restore_labels_and_new_steps_clear_redo() {
        let mut labels = vec![0u16; 8];
        let mut u = UndoStack::new(1 << 20);
        let s = step("a", &[(1, 0, 1), (2, 0, 1)], &mut labels);
        u.push(s);
        let s = step("b", &[(2, 1, 3), (5, 0, 3)], &mut labels);
        u.push(s);
        assert_eq!(labels, [0, 1, 3, 0, 0, 3, 0, 0]);
        assert_eq!(u.undo(&mut labels).unwrap().0, "b");
        assert_eq!(labels, [0, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(u.undo(&mut labels).unwrap().0, "a");
        assert_eq!(labels, [0; 8]);
        assert!(u.undo(&mut labels).is_none());
        u.redo(&mut labels).unwrap();
        assert_eq!(labels, [0, 1, 1, 0, 0, 0, 0, 0]);
        let s = step("c", &[(0, 0, 2)], &mut labels);
        u.push(s);
        assert!(!u.can_redo(), "a new edit drops the redo list");
        assert_eq!(u.undo_name(), Some("c"));
    }

    #[test]
    fn memory_bound_forgets_oldest_steps() {
        let mut labels = vec![0u16; 1000];
        let per_step = 100 * CHANGE_BYTES + 1;
        let mut u = UndoStack::new(3 * per_step);
        for k in 0..5u32 {
            let ch: Vec<(u32, u16, u16)> = (0..100).map(|i| (k * 100 + i, 0, 1)).collect();
            let s = step("x", &ch, &mut labels);
            u.push(s);
        }
        assert!(u.bytes() <= 3 * per_step);
        assert_eq!(u.forgotten, 2);
        let mut n = 0;
        while u.undo(&mut labels).is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        // The two forgotten steps stay applied.
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 200);
    }
}
