//! The answer to one command as a client, packet by packet (no I/O).

use super::{MyQueryError, QueryResult, ResultSet, MAX_COLUMNS, MAX_RESULT_BYTES};
use crate::mysql::codec::CLIENT_DEPRECATE_EOF;
use crate::mysql::codec::{self, Kind, Phase, ProtocolError, Reader};

/// What [`Response::feed`] learned from one packet.
#[derive(Debug)]
pub enum Fed {
    /// The answer goes on.
    More,
    /// The answer is complete.
    Done(QueryResult),
    /// The server answered ERR; the answer is complete.
    Failed(MyQueryError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Start of a statement's result: OK, ERR or a column count.
    First,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (without `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    Rows,
    Done,
}

/// The answer to one command (COM_QUERY, COM_RESET_CONNECTION, COM_INIT_DB) as a client,
/// packet by packet (no I/O). Text-protocol result sets only.
pub struct Response {
    caps: u64,
    at: At,
    result: QueryResult,
    current: ResultSet,
    bytes: usize,
    /// The last schema change reported by session tracking.
    pub schema: Option<String>,
}

impl Response {
    pub fn new(caps: u64) -> Response {
        Response {
            caps,
            at: At::First,
            result: QueryResult::default(),
            current: ResultSet::default(),
            bytes: 0,
            schema: None,
        }
    }

    /// The next packet's payload. `Err` is a protocol violation.
    pub fn feed(&mut self, payload: &[u8]) -> Result<Fed, String> {
        self.bytes = self.bytes.saturating_add(payload.len());
        if self.bytes > MAX_RESULT_BYTES {
            return Err(format!("answer larger than {MAX_RESULT_BYTES} bytes"));
        }
        let caps = self.caps;
        let phase = if self.at == At::First {
            Phase::Response
        } else {
            Phase::Rows
        };
        let kind = codec::classify(payload, phase, caps);
        match (self.at, kind) {
            (At::Done, _) => Err("packet after the end of the answer".into()),
            (_, Kind::Progress) => Ok(Fed::More),
            (_, Kind::Err) => {
                let e = codec::parse_err(payload).map_err(|e| e.to_string())?;
                self.at = At::Done;
                Ok(Fed::Failed(MyQueryError::Server {
                    code: e.code,
                    sqlstate: e
                        .sql_state
                        .map(|s| String::from_utf8_lossy(&s).into_owned())
                        .unwrap_or_else(|| "HY000".into()),
                    message: String::from_utf8_lossy(e.message).into_owned(),
                }))
            }
            (At::First, Kind::Ok) => {
                let ok = codec::parse_ok(payload, caps).map_err(|e| e.to_string())?;
                self.current.affected_rows = ok.affected_rows;
                self.current.last_insert_id = ok.last_insert_id;
                self.end_statement(ok.status, ok.warnings, ok.session_state)
            }
            (At::First, Kind::Data) => {
                let (n, _) = codec::parse_column_count(payload, caps).map_err(|e| e.to_string())?;
                if n == 0 || n > MAX_COLUMNS {
                    return Err(format!("result set with {n} columns"));
                }
                self.at = At::Columns(n);
                Ok(Fed::More)
            }
            (At::First, Kind::Eof) => {
                // COM_SET_OPTION's answer.
                let eof = codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(eof.status, eof.warnings, None)
            }
            (At::First, Kind::LocalInfile) => {
                Err("LOCAL INFILE request, which this connection did not enable".into())
            }
            (At::Columns(left), Kind::Data) => {
                self.current
                    .columns
                    .push(column_name(payload).map_err(|e| e.to_string())?);
                self.at = match left - 1 {
                    0 if caps & CLIENT_DEPRECATE_EOF != 0 => At::Rows,
                    0 => At::ColumnsEof,
                    n => At::Columns(n),
                };
                Ok(Fed::More)
            }
            (At::ColumnsEof, Kind::Eof) => {
                codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.at = At::Rows;
                Ok(Fed::More)
            }
            (At::Rows, Kind::Data) => {
                let row =
                    text_row(payload, self.current.columns.len()).map_err(|e| e.to_string())?;
                self.current.rows.push(row);
                Ok(Fed::More)
            }
            (At::Rows, Kind::Eof) => {
                let eof = codec::parse_eof(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(eof.status, eof.warnings, None)
            }
            (At::Rows, Kind::EofOk) => {
                let ok = codec::parse_ok(payload, caps).map_err(|e| e.to_string())?;
                self.end_statement(ok.status, ok.warnings, ok.session_state)
            }
            (at, kind) => Err(format!("unexpected {kind:?} packet ({at:?})")),
        }
    }

    /// A statement's result ended with `status`: the next one follows or the answer is done.
    fn end_statement(
        &mut self,
        status: u16,
        warnings: u16,
        session: Option<&[u8]>,
    ) -> Result<Fed, String> {
        if let Some(state) = session {
            for change in codec::session_changes(state) {
                match change.map_err(|e| e.to_string())? {
                    codec::SessionChange::Schema(s) => {
                        self.schema = Some(String::from_utf8_lossy(s).into_owned())
                    }
                    codec::SessionChange::SystemVariable { name, value } => {
                        self.result.variables.push((
                            String::from_utf8_lossy(name).into_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let mut set = std::mem::take(&mut self.current);
        set.status = status;
        set.warnings = warnings;
        self.result.sets.push(set);
        self.result.status = status;
        if status & codec::SERVER_MORE_RESULTS_EXISTS != 0 {
            self.at = At::First;
            return Ok(Fed::More);
        }
        self.at = At::Done;
        Ok(Fed::Done(std::mem::take(&mut self.result)))
    }
}

/// The column name (`name`, the fifth string) of a ColumnDefinition41.
fn column_name(payload: &[u8]) -> Result<String, ProtocolError> {
    let mut r = Reader::new(payload, "column definition");
    for _ in 0..4 {
        r.lenenc_bytes()?; // catalog, schema, table, org_table
    }
    let name = r.lenenc_bytes()?;
    r.lenenc_bytes()?; // org_name
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// A text-protocol row of `n` values.
fn text_row(payload: &[u8], n: usize) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(payload, "text row");
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        row.push(
            r.lenenc_bytes_or_null()?
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
    }
    r.finish()?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok, payload};
    use super::super::BACKEND_CAPABILITIES;
    use super::*;
    use crate::mysql::codec::*;
    use bytes::BytesMut;

    const CAPS: u64 = BACKEND_CAPABILITIES | CLIENT_DEPRECATE_EOF;

    fn column_def(name: &str) -> Vec<u8> {
        payload(|b| {
            for s in ["def", "", "", "", name, name] {
                put_lenenc_bytes(b, s.as_bytes());
            }
            put_lenenc_int(b, 0x0c);
            b.extend_from_slice(&[45, 0, 0, 1, 0, 0, 253, 0, 0, 0, 0, 0]);
        })
    }

    fn row(values: &[Option<&str>]) -> Vec<u8> {
        payload(|b| {
            for v in values {
                match v {
                    Some(s) => put_lenenc_bytes(b, s.as_bytes()),
                    None => b.extend_from_slice(&[LENENC_NULL]),
                }
            }
        })
    }

    fn eof_ok(status: u16) -> Vec<u8> {
        payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    header: EOF_HEADER,
                    status,
                    ..Default::default()
                },
                CAPS,
            )
        })
    }

    fn feed_all(caps: u64, packets: &[Vec<u8>]) -> Result<Fed, String> {
        let mut r = Response::new(caps);
        let (last, init) = packets.split_last().unwrap();
        for p in init {
            assert!(matches!(r.feed(p)?, Fed::More));
        }
        r.feed(last)
    }

    #[test]
    fn multi_statement_answer() {
        // SELECT 1 AS a, NULL AS b; UPDATE ...; SELECT 'x' AS c  (with CLIENT_DEPRECATE_EOF)
        let more = SERVER_STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS;
        let update_ok = payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    affected_rows: 3,
                    last_insert_id: 7,
                    status: more,
                    ..Default::default()
                },
                CAPS,
            )
        });
        let packets = vec![
            payload(|b| put_column_count(b, 2, None)),
            column_def("a"),
            column_def("b"),
            row(&[Some("1"), None]),
            eof_ok(more),
            update_ok,
            payload(|b| put_column_count(b, 1, None)),
            column_def("c"),
            row(&[Some("x")]),
            row(&[Some("")]),
            eof_ok(SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS),
        ];
        let Fed::Done(r) = feed_all(CAPS, &packets).unwrap() else {
            panic!()
        };
        assert_eq!(r.sets.len(), 3);
        assert_eq!(r.sets[0].columns, ["a", "b"]);
        assert_eq!(r.sets[0].rows, vec![vec![Some("1".to_string()), None]]);
        assert_eq!(r.sets[0].get(0, "A"), Some("1"));
        assert_eq!((r.sets[1].affected_rows, r.sets[1].last_insert_id), (3, 7));
        assert!(r.sets[1].columns.is_empty());
        assert_eq!(r.sets[2].rows.len(), 2);
        assert_eq!(r.status, SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS);
        assert_eq!(r.value(), Some("1"));
    }

    #[test]
    fn classic_eof_answer_and_errors() {
        let caps = CAPS & !CLIENT_DEPRECATE_EOF;
        let eof = |status| {
            payload(|b| {
                put_eof(
                    b,
                    &EofPacket {
                        warnings: 0,
                        status,
                    },
                    caps,
                )
            })
        };
        let packets = vec![
            payload(|b| put_column_count(b, 1, None)),
            column_def("v"),
            eof(0),
            row(&[Some("ok")]),
            eof(SERVER_STATUS_AUTOCOMMIT),
        ];
        let Fed::Done(r) = feed_all(caps, &packets).unwrap() else {
            panic!()
        };
        assert_eq!(r.rows(), &[vec![Some("ok".to_string())]]);
        // ERR after the first statement of a multi-statement query ends the answer.
        let packets = vec![ok(SERVER_MORE_RESULTS_EXISTS, CAPS), err(1064, "syntax")];
        match feed_all(CAPS, &packets).unwrap() {
            Fed::Failed(MyQueryError::Server {
                code,
                sqlstate,
                message,
            }) => {
                assert_eq!(
                    (code, sqlstate.as_str(), message.as_str()),
                    (1064, "28000", "syntax")
                )
            }
            f => panic!("{f:?}"),
        }
        // A row with the wrong number of values, a packet after the end, LOCAL INFILE.
        let mut r = Response::new(CAPS);
        r.feed(&payload(|b| put_column_count(b, 2, None))).unwrap();
        r.feed(&column_def("a")).unwrap();
        r.feed(&column_def("b")).unwrap();
        assert!(r.feed(&row(&[Some("1")])).is_err());
        let mut r = Response::new(CAPS);
        assert!(matches!(r.feed(&ok(0, CAPS)).unwrap(), Fed::Done(_)));
        assert!(r.feed(&ok(0, CAPS)).is_err());
        assert!(Response::new(CAPS).feed(b"\xFBfile").is_err());
        assert!(Response::new(CAPS)
            .feed(&payload(|b| put_column_count(b, 0, None)))
            .is_err());
    }

    #[test]
    fn session_tracking_reports_schema_and_variables() {
        let mut state = BytesMut::new();
        put_session_change(&mut state, &SessionChange::Schema(b"other"));
        put_session_change(
            &mut state,
            &SessionChange::SystemVariable {
                name: b"autocommit",
                value: b"OFF",
            },
        );
        let p = payload(|b| {
            put_ok(
                b,
                &OkPacket {
                    status: SERVER_SESSION_STATE_CHANGED,
                    session_state: Some(&state),
                    ..Default::default()
                },
                CAPS,
            )
        });
        let mut r = Response::new(CAPS);
        let Fed::Done(res) = r.feed(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.schema.as_deref(), Some("other"));
        assert_eq!(
            res.variables,
            [("autocommit".to_string(), "OFF".to_string())]
        );
    }

    #[test]
    fn answers_never_panic_on_random_bytes() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            for caps in [CAPS, CAPS & !CLIENT_DEPRECATE_EOF] {
                let mut r = Response::new(caps);
                for _ in 0..8 {
                    let len = (next() % 24) as usize;
                    let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    if let Some(b) = p.first_mut() {
                        *b = [0x00, 0x01, 0x02, 0xFB, 0xFC, 0xFE, 0xFF][(next() % 7) as usize];
                    }
                    if !matches!(r.feed(&p), Ok(Fed::More)) {
                        break;
                    }
                }
            }
        }
    }
}
