//! The one netfilter netlink socket layer (`NETLINK_NETFILTER`, nfnetlink).
//!
//! Built on `netlink-sys` (a blocking socket) and `netlink-packet-core`
//! (framing). Requests are typed `netlink-packet-netfilter` messages; replies
//! are returned as raw [`Reply`] frames so that each reader decodes only what
//! it needs and an unexpected attribute in one reply never loses the rest.
//!
//! Kernel quirks handled here (see `conntrack-and-tables.md` §1.2):
//! - `IPCTNL_MSG_CT_GET_STATS` answers with one message flagged
//!   `NLM_F_MULTI` and never sends `NLMSG_DONE`: ask without `NLM_F_ACK`
//!   (errors come back as `NLMSG_ERROR` all the same) and stop at that first
//!   message ([`ReplyEnd::One`]: one receive; with an ACK it took two).
//! - Dumps end with `NLMSG_DONE` ([`ReplyEnd::Done`]).
//! - A receive timeout guards every exchange, so a kernel that answers
//!   differently from what we expect produces an error, never a hang.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::NetfilterMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// `NLMSG_ERROR`: an error or, with code 0, an ACK.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a dump.
const NLMSG_DONE: u16 = 3;
/// `NLMSG_NOOP`.
const NLMSG_NOOP: u16 = 1;
/// How long one exchange may wait for the kernel before failing.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The receive buffer: the kernel fills a dump datagram up to the largest
/// buffer a reader offered, capped at 32 KiB (`netlink_recvmsg`,
/// `netlink_dump`), and our other replies are small, so one `recv` with
/// this much room takes any datagram whole (no peek first). A larger one is
/// reported as malformed, never cut silently.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Errors of the netlink socket layer. Each names the operation it served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)` or its setup failed.
    #[error("{op}: cannot open a netfilter netlink socket")]
    Open {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// `send(2)` failed.
    #[error("{op}: sending the netlink request failed")]
    Send {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// `recv(2)` failed or timed out.
    #[error("{op}: receiving the netlink reply failed")]
    Receive {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel answered with `NLMSG_ERROR` and a non-zero errno.
    #[error("{op}: the kernel refused the request")]
    Kernel {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A reply could not be decoded.
    #[error("{op}: malformed netlink reply: {detail}")]
    Malformed { op: &'static str, detail: String },
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Open { source, .. }
            | Error::Send { source, .. }
            | Error::Receive { source, .. }
            | Error::Kernel { source, .. } => source.raw_os_error(),
            Error::Malformed { .. } => None,
        }
    }
}
impl crate::error::Hint for Error {
    /// A hint for the user, when the cause suggests one.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Some(
                "netfilter netlink needs CAP_NET_ADMIN in this network \
                 namespace: run as root (or grant CAP_NET_ADMIN)",
            ),
            Some(libc::EPROTONOSUPPORT) => Some(
                "the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK); \
                 load it with `nfkit modules load nfnetlink`",
            ),
            Some(libc::EOPNOTSUPP) => Some(
                "the kernel does not handle this request: the netfilter \
                 subsystem is missing (module not loaded or not built)",
            ),
            Some(libc::EAGAIN) => Some("the kernel did not answer in time; retry the command"),
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// Where the replies to one request end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyEnd {
    /// A dump: collect until `NLMSG_DONE`.
    Done,
    /// Request sent with `NLM_F_ACK`: collect until the ACK.
    Ack,
    /// A get request answered by one message (sent without `NLM_F_ACK`:
    /// the kernel acknowledges only errors): the first data message ends it.
    One,
}

/// One reply frame: its netlink header and the payload after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The netlink header as sent by the kernel.
    pub header: NetlinkHeader,
    /// The bytes after the 16-byte header (nfgenmsg + attributes).
    pub payload: Vec<u8>,
}

/// A blocking `NETLINK_NETFILTER` socket connected to the kernel.
///
/// The socket works in the network namespace of the thread that opened it.
pub struct NfnlSocket {
    socket: Socket,
    next_sequence: u32,
    /// Reused for every datagram ([`RECEIVE_BUFFER`] bytes).
    buffer: Vec<u8>,
}

impl NfnlSocket {
    /// Opens and binds a socket; `op` names the operation for errors.
    pub fn open(op: &'static str) -> Result<Self, Error> {
        let open_err = |source| Error::Open { op, source };
        let socket = Socket::new(NETLINK_NETFILTER).map_err(open_err)?;
        // No bind: the kernel binds the socket to a free port id on the
        // first send (netlink_autobind), and replies are matched by
        // sequence number, not port. Connected to the kernel (port 0), it
        // receives from the kernel only.
        socket.connect(&SocketAddr::new(0, 0)).map_err(open_err)?;
        nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(RECEIVE_TIMEOUT.as_secs() as libc::time_t, 0),
        )
        .map_err(|errno| open_err(io::Error::from(errno)))?;
        Ok(Self {
            socket,
            next_sequence: 1,
            buffer: Vec::with_capacity(RECEIVE_BUFFER),
        })
    }

    /// Sends a dump request (`NLM_F_REQUEST | NLM_F_DUMP`) and returns every
    /// message up to `NLMSG_DONE`.
    pub fn dump(
        &mut self,
        op: &'static str,
        request: NetfilterMessage,
    ) -> Result<Vec<Reply>, Error> {
        self.exchange(op, request, NLM_F_REQUEST | NLM_F_DUMP, ReplyEnd::Done)
    }

    /// Sends a get request answered by one message (no `NLM_F_ACK`: an
    /// error still comes back as `NLMSG_ERROR`) and returns that message:
    /// one receive instead of two.
    pub fn request_one(
        &mut self,
        op: &'static str,
        request: NetfilterMessage,
    ) -> Result<Reply, Error> {
        let mut replies = self.exchange(op, request, NLM_F_REQUEST, ReplyEnd::One)?;
        replies.pop().ok_or_else(|| Error::Malformed {
            op,
            detail: "no reply message".into(),
        })
    }

    /// Sends `request` with `flags` and collects replies until `end`.
    pub fn exchange(
        &mut self,
        op: &'static str,
        request: NetfilterMessage,
        flags: u16,
        end: ReplyEnd,
    ) -> Result<Vec<Reply>, Error> {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let bytes = encode_request(request, flags, sequence);
        self.socket
            .send(&bytes, 0)
            .map_err(|source| Error::Send { op, source })?;

        let mut collected = Vec::new();
        loop {
            self.buffer.clear();
            // MSG_TRUNC: the datagram's real length even if it did not fit.
            let length = self
                .socket
                .recv(&mut self.buffer, libc::MSG_TRUNC)
                .map_err(|source| Error::Receive { op, source })?;
            if length > self.buffer.len() {
                return Err(Error::Malformed {
                    op,
                    detail: format!(
                        "a reply datagram of {length} bytes exceeds the {RECEIVE_BUFFER}-byte receive buffer"
                    ),
                });
            }
            for frame in
                split_frames(&self.buffer).map_err(|detail| Error::Malformed { op, detail })?
            {
                if frame.header.sequence_number != sequence {
                    continue; // a late reply to an earlier request
                }
                match classify(&frame) {
                    FrameKind::Data => {
                        collected.push(frame);
                        if end == ReplyEnd::One {
                            return Ok(collected);
                        }
                    }
                    FrameKind::Noop => {}
                    FrameKind::Done => {
                        if end == ReplyEnd::Done {
                            return Ok(collected);
                        }
                    }
                    FrameKind::Ack => {
                        if end == ReplyEnd::Ack {
                            return Ok(collected);
                        }
                    }
                    FrameKind::Error(errno) => {
                        return Err(Error::Kernel {
                            op,
                            source: io::Error::from_raw_os_error(errno),
                        });
                    }
                    FrameKind::Truncated => {
                        return Err(Error::Malformed {
                            op,
                            detail: "truncated NLMSG_ERROR".into(),
                        });
                    }
                }
            }
        }
    }
}

/// One `NETLINK_NETFILTER` socket for the readers of one command
/// (`status` asks ctnetlink and then nftables): opened on first use, so a
/// reader that asks nothing opens nothing, and a second reader reuses it.
/// Replies are matched by sequence number, so a late reply to an earlier
/// request never reaches a later one.
#[derive(Default)]
pub struct SharedSocket {
    socket: Option<NfnlSocket>,
}

impl SharedSocket {
    /// The socket, opened now if this is the first use; `op` names the
    /// operation for an open error (a failed open is tried again by the
    /// next caller, under its own name).
    pub fn get(&mut self, op: &'static str) -> Result<&mut NfnlSocket, Error> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => NfnlSocket::open(op)?,
        };
        Ok(self.socket.insert(socket))
    }
}

/// Serialises a netfilter request into one netlink frame.
pub fn encode_request(request: NetfilterMessage, flags: u16, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    message.finalize();
    let mut bytes = vec![0u8; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// Splits one datagram into its netlink frames.
pub fn split_frames(datagram: &[u8]) -> Result<Vec<Reply>, String> {
    let mut frames = Vec::new();
    let mut offset = 0usize;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let buffer = NetlinkBuffer::new_checked(rest)
            .map_err(|e| format!("bad frame at byte {offset}: {e}"))?;
        let length = buffer.length() as usize;
        let mut header = NetlinkHeader::default();
        header.length = buffer.length();
        header.message_type = buffer.message_type();
        header.flags = buffer.flags();
        header.sequence_number = buffer.sequence_number();
        header.port_number = buffer.port_number();
        frames.push(Reply {
            header,
            payload: rest[16..length].to_vec(),
        });
        // Frames are padded to 4 bytes (NLMSG_ALIGN).
        offset += length.div_ceil(4) * 4;
    }
    Ok(frames)
}

enum FrameKind {
    Data,
    Noop,
    Done,
    Ack,
    Error(i32),
    Truncated,
}

fn classify(frame: &Reply) -> FrameKind {
    match frame.header.message_type {
        NLMSG_NOOP => FrameKind::Noop,
        NLMSG_DONE => FrameKind::Done,
        NLMSG_ERROR => match frame.payload.get(..4) {
            Some(code) => {
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                if code == 0 {
                    FrameKind::Ack
                } else {
                    FrameKind::Error(code.saturating_neg())
                }
            }
            None => FrameKind::Truncated,
        },
        _ => FrameKind::Data,
    }
}

/// Decodes a reply's payload as a typed netfilter message.
pub fn decode(op: &'static str, reply: &Reply) -> Result<NetfilterMessage, Error> {
    use netlink_packet_core::ParseableParametrized;
    NetfilterMessage::parse_with_param(&reply.payload[..], reply.header.message_type).map_err(|e| {
        Error::Malformed {
            op,
            detail: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_frames_handles_padding_and_two_frames() {
        // An ACK followed by DONE, as two frames in one datagram.
        let mut datagram = vec![
            0x24, 0, 0, 0, 0x02, 0, 0x00, 0x01, 1, 0, 0, 0, 0, 0, 0, 0, //
            0, 0, 0, 0, // error 0 = ACK
            0x14, 0, 0, 0, 0x05, 0x01, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        datagram.extend_from_slice(&[
            0x14, 0, 0, 0, 0x03, 0, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let frames = split_frames(&datagram).unwrap();
        assert_eq!(frames.len(), 2);
        assert!(matches!(classify(&frames[0]), FrameKind::Ack));
        assert!(matches!(classify(&frames[1]), FrameKind::Done));
    }

    #[test]
    fn eperm_reply_is_an_error_with_errno() {
        // Unprivileged GET_STATS reply from the reference (§1.4).
        let mut datagram = vec![
            0x28, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, 0x0e, 0x43, 0, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        datagram.extend_from_slice(&[
            0x14, 0, 0, 0, 0x05, 0x01, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let frames = split_frames(&datagram).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(matches!(
            classify(&frames[0]),
            FrameKind::Error(libc::EPERM)
        ));
    }

    #[test]
    fn truncated_datagram_is_rejected() {
        assert!(split_frames(&[0x30, 0, 0, 0, 1, 0]).is_err());
        let mut long = vec![0x30, 0, 0, 0, 0x05, 0x01, 0, 0];
        long.extend_from_slice(&[0; 12]);
        assert!(split_frames(&long).is_err());
    }
}
