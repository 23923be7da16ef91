//! The gRPC fallback of the data plane: when no data connection can be made (or
//! `--force-grpc`), the same record bytes travel as `Data` frames of the session's gRPC
//! stream. [`FrameWriter`] turns writes into frames on the source's side;
//! [`FrameReader`] reads back the bytes the session's dispatcher hands over on the
//! destination's side. Both block, as the role code on its threads expects.

use std::io::{self, Read, Write};

use tokio::sync::mpsc;

use crate::session::frame;
use crate::wire::pb;

/// Bytes written become `Data` frames of the session stream.
pub struct FrameWriter {
    tx: mpsc::Sender<pb::Frame>,
}

impl FrameWriter {
    pub(super) fn new(tx: mpsc::Sender<pb::Frame>) -> FrameWriter {
        FrameWriter { tx }
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let frame = frame(pb::frame::Kind::Data(buf.to_vec()));
        self.tx
            .blocking_send(frame)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "session closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the bytes of `Data` frames, handed over by the session's dispatcher.
pub struct FrameReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl FrameReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> FrameReader {
        FrameReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::data::{Incoming, Sink};
    use crate::wire::record::Header;
    use rustix::fd::AsFd;

    #[test]
    fn records_survive_the_trip_through_data_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let content: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let len = content.len() as u32;

        let (frames_tx, mut frames_rx) = mpsc::channel(4);
        let sender = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            let mut sink = Sink::frames(frames_tx);
            let sent = sink.send_range(file.as_fd(), Header::data(7, 0, len, u64::from(len)));
            sink.finish().unwrap();
            sent.unwrap()
        });
        // The session's dispatcher: each `Data` frame's bytes, handed to the reader.
        let (bytes_tx, bytes_rx) = mpsc::channel(4);
        let dispatcher = std::thread::spawn(move || {
            let mut frames = 0;
            while let Some(f) = frames_rx.blocking_recv() {
                let Some(pb::frame::Kind::Data(bytes)) = f.kind else {
                    panic!("only Data frames: {f:?}");
                };
                frames += 1;
                bytes_tx.blocking_send(bytes).unwrap();
            }
            frames
        });

        let mut incoming = Incoming::frames(FrameReader::new(bytes_rx));
        let h = incoming.next_header().unwrap().unwrap();
        assert_eq!((h.id, h.len), (7, len));
        assert!(incoming.payload().unwrap() == content);
        assert!(incoming.next_header().unwrap().is_none());
        assert!(sender.join().unwrap());
        assert!(
            dispatcher.join().unwrap() > 1,
            "3 MiB do not fit in one frame"
        );
    }
}
