//! Property tests of the frame reader (`wire::FrameReader`): whatever
//! bytes a client sends, with any 64-bit length in any header, split at
//! any points and with every read cancelled once (as `select!` does in
//! `ws.rs`), the reader never panics, every outcome is a message or a
//! `ReadError`, and its memory stays bounded by the limit.
//!
//! The heap is measured, not estimated: this test binary's allocator
//! counts what each thread holds ([`heap`]).

use super::wire::{opcode, FrameReader, Incoming, ReadError, IDLE_BUFFER, MAX_HEADER};
use proptest::prelude::*;
use std::{
    future::Future,
    io,
    pin::{pin, Pin},
    task::{Context, Poll, Waker},
};
use tokio::io::{AsyncRead, ReadBuf};

/// The system allocator, counting the bytes each thread holds.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn count(delta: isize) {
        let _ = HELD.try_with(|held| {
            let now = held.get() + delta;
            held.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is passed on to `System` unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let block = unsafe { System.alloc(layout) };
            if !block.is_null() {
                count(layout.size() as isize);
            }
            block
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let block = unsafe { System.alloc_zeroed(layout) };
            if !block.is_null() {
                count(layout.size() as isize);
            }
            block
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            unsafe { System.dealloc(block, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
            let moved = unsafe { System.realloc(block, layout, size) };
            if !moved.is_null() {
                // The new block before the old one is freed: the most a
                // move can hold at once.
                count(size as isize);
                count(-(layout.size() as isize));
            }
            moved
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Runs `f`; returns its result and the most heap this thread held
    /// during it beyond what it held before.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = HELD.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let out = f();
        (out, (PEAK.with(Cell::get) - before).max(0) as usize)
    }
}

/// How a header writes its length: the shortest form (as RFC 6455 asks),
/// or a longer one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LenForm {
    Shortest,
    Bits16,
    Bits64,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame as bytes: `first` (FIN, reserved bits, opcode), a
/// header claiming `claimed` payload bytes, then `payload` (masked when
/// `masked`), however long it really is.
pub(crate) fn frame_bytes(
    first: u8,
    masked: bool,
    claimed: u64,
    form: LenForm,
    payload: &[u8],
) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match form {
        LenForm::Shortest if claimed < 126 => out.push(mask_bit | claimed as u8),
        LenForm::Shortest | LenForm::Bits16 if claimed <= u16::MAX as u64 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(claimed as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&claimed.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A well-formed masked client frame, as a browser sends it.
pub(crate) fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let first = if fin { 0x80 } else { 0 } | op;
    frame_bytes(
        first,
        true,
        payload.len() as u64,
        LenForm::Shortest,
        payload,
    )
}

/// A peer that sends `data` in chunks of `sizes` (in turn), and before
/// each chunk makes the reader wait once.
struct Chunks {
    data: Vec<u8>,
    sent: usize,
    sizes: Vec<usize>,
    turn: usize,
    waited: bool,
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.waited = !this.waited;
        if this.waited {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let size = this.sizes[this.turn % this.sizes.len()];
        this.turn += 1;
        let n = size.min(this.data.len() - this.sent).min(buf.remaining());
        buf.put_slice(&this.data[this.sent..this.sent + n]);
        this.sent += n;
        Poll::Ready(Ok(()))
    }
}

/// Everything a reader with this `limit` makes of `data` sent in chunks
/// of `sizes`, up to its first error. Each read is cancelled once, and
/// after every poll the reader's memory is checked: its buffer holds at
/// most one frame (or a small read), the message being joined at most the
/// limit, and the heap it used at its peak two buffers (while one grows
/// into the other) and the joined message, plus 1 KiB of bookkeeping.
pub(crate) fn read_all(
    data: Vec<u8>,
    sizes: Vec<usize>,
    limit: usize,
) -> Vec<Result<Incoming, ReadError>> {
    let buffer = (limit + MAX_HEADER).max(IDLE_BUFFER);
    let most_heap = 2 * buffer + limit + 1024;
    let mut reader = FrameReader::new(limit);
    let mut io = Chunks {
        data,
        sent: 0,
        sizes,
        turn: 0,
        waited: false,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        let (poll, heap) = heap::peak(|| pin!(reader.next(&mut io)).poll(&mut cx));
        assert!(
            heap <= most_heap,
            "{heap} bytes of heap for a limit of {limit}"
        );
        assert!(
            reader.buffered() <= buffer,
            "{} bytes buffered",
            reader.buffered()
        );
        assert!(reader.joined() <= limit, "{} bytes joined", reader.joined());
        match poll {
            Poll::Pending => continue,
            Poll::Ready(Ok(Incoming::Text(text))) => {
                assert!(text.len() <= limit);
                out.push(Ok(Incoming::Text(text)));
            }
            Poll::Ready(Ok(other)) => out.push(Ok(other)),
            Poll::Ready(Err(e)) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// Lengths a header may claim: small ones, the edges of each length form
/// and of the limit, anything, and the top of the 64-bit range.
fn claimed_len(limit: usize) -> impl Strategy<Value = u64> {
    let limit = limit as u64;
    prop_oneof![
        4 => 0u64..200,
        1 => prop::sample::select(vec![125u64, 126, 127, 65_535, 65_536, 1 << 63]),
        1 => limit.saturating_sub(2)..limit + 2,
        2 => any::<u64>(),
        1 => (u64::MAX - 64)..=u64::MAX,
    ]
}

fn len_form() -> impl Strategy<Value = LenForm> {
    prop_oneof![
        6 => Just(LenForm::Shortest),
        1 => Just(LenForm::Bits16),
        1 => Just(LenForm::Bits64),
    ]
}

/// One frame as a client could send it: mostly well-formed (masked, a
/// known opcode, the length it claims), sometimes not in any way.
fn any_frame(limit: usize) -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![
        8 => (any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]))
            .prop_map(|(fin, op)| if fin { 0x80 } else { 0 } | op),
        1 => any::<u8>(),
    ];
    let payload = prop::collection::vec(any::<u8>(), 0..300);
    let claimed = prop_oneof![3 => Just(None), 1 => claimed_len(limit).prop_map(Some)];
    (
        first,
        prop::bool::weighted(0.95),
        claimed,
        len_form(),
        payload,
    )
        .prop_map(|(first, masked, claimed, form, payload)| {
            let claimed = claimed.unwrap_or(payload.len() as u64);
            frame_bytes(first, masked, claimed, form, &payload)
        })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![3 => 1usize..8, 1 => 8usize..600], 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_bytes_leave_the_reader_whole_and_bounded(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in chunk_sizes(),
        limit in 1usize..4096,
    ) {
        read_all(data, sizes, limit);
    }

    #[test]
    fn any_frames_leave_the_reader_whole_and_bounded(
        (limit, frames) in (1usize..2048).prop_flat_map(|limit| {
            (Just(limit), prop::collection::vec(any_frame(limit), 0..12))
        }),
        sizes in chunk_sizes(),
    ) {
        read_all(frames.concat(), sizes, limit);
    }

    /// The defect this guards against: a short fragment, then a header
    /// whose length overflowed the sum with it.
    #[test]
    fn a_frame_over_what_is_left_of_the_limit_is_refused_from_its_header(
        fragments in prop::collection::vec(0usize..600, 0..5),
        pings in prop::collection::vec(any::<bool>(), 5),
        room in 0usize..2000,
        over in prop_oneof![any::<u64>(), 0u64..10, (u64::MAX - 100)..=u64::MAX],
        op in prop::sample::select(vec![opcode::CONTINUATION, opcode::TEXT, opcode::BINARY]),
        form in len_form(),
        sizes in chunk_sizes(),
    ) {
        let joined: usize = fragments.iter().sum();
        let limit = joined + room;
        prop_assume!(limit > 0);
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for (i, size) in fragments.iter().enumerate() {
            let op = if i == 0 { opcode::TEXT } else { opcode::CONTINUATION };
            data.extend(client_frame(false, op, &vec![b'x'; *size]));
            if pings[i] {
                data.extend(client_frame(true, opcode::PING, &[i as u8]));
                expected.push(Ok(Incoming::Ping(bytes::Bytes::from(vec![i as u8]))));
            }
        }
        // No payload follows: the reader must not wait for one.
        let claimed = (room as u64 + 1).saturating_add(over);
        data.extend(frame_bytes(0x80 | op, true, claimed, form, &[]));
        expected.push(Err(ReadError::TooBig));
        prop_assert_eq!(read_all(data, sizes, limit), expected);
    }

    #[test]
    fn fragmented_messages_arrive_whole_between_pings(
        text in "\\PC{0,200}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        pings in prop::collection::vec(any::<bool>(), 6),
        sizes in chunk_sizes(),
    ) {
        let bytes = text.as_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        let mut data = Vec::new();
        let mut expected = Vec::new();
        let parts = at.windows(2).count();
        for (i, part) in at.windows(2).enumerate() {
            let op = if i == 0 { opcode::TEXT } else { opcode::CONTINUATION };
            data.extend(client_frame(i + 1 == parts, op, &bytes[part[0]..part[1]]));
            if pings[i] && i + 1 < parts {
                data.extend(client_frame(true, opcode::PING, b"p"));
                expected.push(Ok(Incoming::Ping(bytes::Bytes::from_static(b"p"))));
            }
        }
        expected.push(Ok(Incoming::Text(text.clone())));
        expected.push(Err(ReadError::Gone));
        // The limit is exactly the message's length: it fits.
        prop_assert_eq!(read_all(data, sizes, bytes.len().max(1)), expected);
    }
}
