//! Any bytes, any negotiated context: decoding never panics, and whatever
//! decodes re-encodes to something that decodes again.
#![no_main]

use bgp_wire::{Ctx, Family, Message, MAX_LEN_EXTENDED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut ctx = Ctx { four_octet_as: flags & 1 != 0, extended_messages: flags & 2 != 0, ..Default::default() };
    if flags & 4 != 0 {
        ctx.add_path_rx.insert(Family::IPV4_UNICAST, true);
        ctx.add_path_tx.insert(Family::IPV4_UNICAST, true);
    }
    let mut buf = vec![0xffu8; 16];
    let len = (rest.len() + 18).min(MAX_LEN_EXTENDED) as u16;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&rest[..(len as usize - 18).min(rest.len())]);
    if let Ok(m) = Message::decode(&buf, &ctx) {
        let again = m.to_bytes(&ctx);
        let _ = Message::decode(&again, &ctx);
    }
    let _ = bgp_wire::frame_len(rest, MAX_LEN_EXTENDED);
});
