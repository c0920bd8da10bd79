//! Server-sent events read from a `fetch` body as it arrives (`EventSource` cannot POST): text in, whole events
//! out.

/// One event: its name (`message` when the server gave none) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    pub name: String,
    pub data: String,
}

/// Collects the stream's text and gives back each event once its blank line has arrived.
#[derive(Debug, Default)]
pub struct EventParser {
    buffer: String,
    /// A `\r` that ended the last piece: it may be the first half of a `\r\n` cut in two.
    held_back: String,
}

impl EventParser {
    /// Adds text that arrived; returns the events it completed.
    pub fn push(&mut self, text: &str) -> Vec<ServerEvent> {
        let mut text = std::mem::take(&mut self.held_back) + text;
        if text.ends_with('\r') {
            text.pop();
            self.held_back.push('\r');
        }
        self.buffer.push_str(&text.replace("\r\n", "\n"));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            if let Some(event) = parse_block(&block) {
                events.push(event);
            }
        }
        events
    }
}

/// An event's lines (`event:`, `data:`; comments and keep-alives carry no data and give no event).
fn parse_block(block: &str) -> Option<ServerEvent> {
    let mut name = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_string()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    data.map(|data| ServerEvent {
        name: name.unwrap_or_else(|| "message".into()),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_whole_however_the_text_is_cut() {
        let stream =
            "event: image\ndata: {\"index\":0}\n\n:\n\nevent: done\r\ndata: {\"id\":\"x\"}\r\n\r\n";
        for cut in 0..stream.len() {
            let mut parser = EventParser::default();
            let mut events = parser.push(&stream[..cut]);
            events.extend(parser.push(&stream[cut..]));
            assert_eq!(
                events,
                vec![
                    ServerEvent {
                        name: "image".into(),
                        data: "{\"index\":0}".into()
                    },
                    ServerEvent {
                        name: "done".into(),
                        data: "{\"id\":\"x\"}".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn data_lines_join_and_a_nameless_event_is_a_message() {
        let mut parser = EventParser::default();
        let events = parser.push("data: a\ndata: b\n\n");
        assert_eq!(
            events,
            vec![ServerEvent {
                name: "message".into(),
                data: "a\nb".into()
            }]
        );
    }
}
