//! The DNS decision, without I/O: a query for a known mesh name is answered here with its
//! virtual address; any other query goes upstream unchanged.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::target::ServiceName;

/// How long a client may keep an answer: short, so that a service that goes away stops
/// resolving soon, and a cached answer rarely outlives the route behind it.
pub(crate) const TTL: u32 = 5;

/// What becomes of one query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// This message answers it.
    Answer(Vec<u8>),
    /// The upstream resolvers answer it: send it on, as it came.
    Forward,
}

/// Decides on the DNS message `query`. `address_of` gives a mesh name's virtual address
/// while the name is a known service, `None` otherwise.
pub(crate) fn decide(
    query: &[u8],
    address_of: impl FnOnce(&ServiceName) -> Option<Ipv4Addr>,
) -> Reply {
    let Ok(message) = Message::from_vec(query) else {
        return Reply::Forward;
    };
    let [question] = message.queries() else {
        return Reply::Forward;
    };
    let asked = question.query_type();
    let plain_query = message.message_type() == MessageType::Query
        && message.op_code() == OpCode::Query
        && question.query_class() == DNSClass::IN
        && matches!(asked, RecordType::A | RecordType::AAAA);
    if !plain_query {
        return Reply::Forward;
    }
    let name = question.name().to_ascii();
    let Some(address) = ServiceName::from_authority(&name).and_then(|n| address_of(&n)) else {
        return Reply::Forward;
    };
    let mut answer = Message::new();
    answer
        .set_id(message.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(message.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(question.clone());
    // A mesh name has an IPv4 address only: AAAA gets an empty answer (no error), so that a
    // client asking both uses the A record.
    if asked == RecordType::A {
        let record = Record::from_rdata(question.name().clone(), TTL, RData::A(address.into()));
        answer.add_answer(record);
    }
    match answer.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Forward,
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("a name"), kind));
        m.to_vec().expect("encodes")
    }

    fn known(name: &ServiceName) -> Option<Ipv4Addr> {
        (name.service == "greeter").then_some(match &name.datacenter {
            Some(_) => Ipv4Addr::new(240, 0, 0, 9),
            None => Ipv4Addr::new(240, 0, 0, 7),
        })
    }

    fn answered(reply: Reply) -> Message {
        match reply {
            Reply::Answer(bytes) => Message::from_vec(&bytes).expect("decodes"),
            Reply::Forward => panic!("forwarded"),
        }
    }

    #[test]
    fn mesh_names_of_known_services_get_their_virtual_address() {
        for (name, want) in [
            ("greeter.", [240, 0, 0, 7]),
            ("Greeter.mesh.", [240, 0, 0, 7]),
            ("greeter.dc2.", [240, 0, 0, 9]),
            ("greeter.dc2.mesh.", [240, 0, 0, 9]),
        ] {
            let m = answered(decide(&query(name, RecordType::A), known));
            assert_eq!(m.id(), 4242);
            assert_eq!(m.message_type(), MessageType::Response);
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert_eq!(m.queries().len(), 1, "the question is echoed");
            let ips: Vec<_> = m
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            assert_eq!(ips, [Ipv4Addr::from(want)], "{name}");
            assert_eq!(m.answers()[0].ttl(), TTL);
        }
        let aaaa = answered(decide(&query("greeter.", RecordType::AAAA), known));
        assert!(aaaa.answers().is_empty() && aaaa.response_code() == ResponseCode::NoError);
    }

    #[test]
    fn everything_else_goes_upstream() {
        for (name, kind) in [
            ("example.com.", RecordType::A),
            ("www.example.com.", RecordType::A),
            ("billing.", RecordType::A),
            ("greeter.", RecordType::MX),
            ("greeter.", RecordType::TXT),
        ] {
            assert_eq!(
                decide(&query(name, kind), known),
                Reply::Forward,
                "{name} {kind}"
            );
        }
        assert_eq!(decide(b"\x00\x01garbage", known), Reply::Forward);
        assert_eq!(decide(&[], known), Reply::Forward);
    }
}
