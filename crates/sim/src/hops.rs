//! A short list of link indices stored inside its owner.
//!
//! Every flow keeps its path and, per hop, its slot in the link's flow list. The
//! max-min recomputation walks the paths of every flow in a component, so reading them
//! from the flow itself instead of from a separate allocation saves a cache miss per
//! flow. Paths without a core graph have at most four hops (two interfaces, two access
//! links); longer core routes spill to the heap.

/// Hops kept inline. Longer lists spill to the heap.
const INLINE: usize = 6;

#[derive(Clone, Debug)]
pub(crate) enum Hops {
    Inline { len: u8, items: [u32; INLINE] },
    Spilled(Vec<u32>),
}

impl Hops {
    /// Collects `items`. Each must fit in 32 bits, which holds for link indices and
    /// per-link slots, since a network or a link with 2^32 entries would not fit in
    /// memory anyway.
    pub(crate) fn new(items: impl ExactSizeIterator<Item = usize>) -> Hops {
        let narrow = |item: usize| u32::try_from(item).expect("index fits in 32 bits");
        if items.len() > INLINE {
            return Hops::Spilled(items.map(narrow).collect());
        }
        let mut inline = [0; INLINE];
        let len = items.len();
        for (place, item) in inline.iter_mut().zip(items) {
            *place = narrow(item);
        }
        Hops::Inline { len: len as u8, items: inline }
    }

    pub(crate) fn as_slice(&self) -> &[u32] {
        match self {
            Hops::Inline { len, items } => &items[..usize::from(*len)],
            Hops::Spilled(items) => items,
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u32] {
        match self {
            Hops::Inline { len, items } => &mut items[..usize::from(*len)],
            Hops::Spilled(items) => items,
        }
    }

    /// Iterates over the items in order, widened to `usize`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.as_slice().iter().map(|&item| item as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_around_inline_limit() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 40] {
            let hops = Hops::new((0..len).map(|item| item * 3));
            let items: Vec<usize> = hops.iter().collect();
            let expected: Vec<usize> = (0..len).map(|item| item * 3).collect();
            assert_eq!(items, expected, "{len} hops");
        }
    }
}
