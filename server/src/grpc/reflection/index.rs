//! The descriptor index reflection answers from: every file of the registered
//! encoded `FileDescriptorSet`s, kept as its original bytes (so custom options
//! survive), with the symbols, services and extensions it declares.
//!
//! Invariants:
//! - The first registration of a file name wins (as in tonic-reflection).
//! - [`Index::with_dependencies`] answers the file itself first, then its
//!   transitive imports breadth-first, each at most once per answer and none
//!   already in `sent` (the files sent earlier on the same stream), as
//!   `reflection.proto` allows and grpc-go's `fileDescWithDependencies` does.
//!   The requested file itself is always sent, even when sent before.
//!   An import that is not in the index is skipped (grpc-go skips placeholders).

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot decode a FileDescriptorSet: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("a FileDescriptorProto has no name")]
    Unnamed,
}

/// One file: its bytes as registered and the names it imports.
#[derive(Debug)]
struct File {
    raw: Arc<[u8]>,
    imports: Vec<String>,
}

/// Files, symbols, services and extensions of the registered descriptor sets.
#[derive(Debug, Default)]
pub(crate) struct Index {
    files: HashMap<String, File>,
    /// Fully qualified symbol (no leading dot) → the file that declares it.
    symbols: HashMap<String, String>,
    /// Fully qualified message names (for `all_extension_numbers_of_type`).
    messages: HashSet<String>,
    /// (extended message, field number) → the file that declares the extension.
    extensions: HashMap<(String, i32), String>,
    services: Vec<String>,
}

impl Index {
    /// Indexes every file of each encoded `FileDescriptorSet`, in order.
    pub(crate) fn new(encoded_sets: &[&[u8]]) -> Result<Self, IndexError> {
        let mut index = Self::default();
        for encoded in encoded_sets {
            // Decoding the set decodes each file; the bytes served are each
            // file re-split from the set so unknown fields (custom options)
            // are kept verbatim.
            let set = RawFileSet::decode(*encoded)?;
            for raw in set.file {
                let file = FileDescriptorProto::decode(raw.as_slice())?;
                index.add(&file, raw)?;
            }
        }
        index.services.sort();
        Ok(index)
    }

    /// Full names of the services, sorted.
    pub(crate) fn services(&self) -> &[String] {
        &self.services
    }

    /// The file named `name`, if indexed.
    pub(crate) fn has_file(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// The file that declares `symbol` (a package-qualified name, no leading dot).
    pub(crate) fn file_of_symbol(&self, symbol: &str) -> Option<&str> {
        self.symbols.get(symbol).map(String::as_str)
    }

    /// The file that declares extension `number` of `message`.
    pub(crate) fn file_of_extension(&self, message: &str, number: i32) -> Option<&str> {
        self.extensions
            .get(&(message.to_owned(), number))
            .map(String::as_str)
    }

    /// The extension numbers of `message`, ascending; `None` for an unknown message.
    pub(crate) fn extension_numbers(&self, message: &str) -> Option<Vec<i32>> {
        if !self.messages.contains(message) {
            return None;
        }
        let mut numbers: Vec<i32> = self
            .extensions
            .keys()
            .filter(|(m, _)| m == message)
            .map(|(_, n)| *n)
            .collect();
        numbers.sort_unstable();
        Some(numbers)
    }

    /// `root` and its transitive imports not in `sent` (see the module
    /// invariants); every file returned is added to `sent`.
    pub(crate) fn with_dependencies(&self, root: &str, sent: &mut HashSet<String>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([root.to_owned()]);
        let mut visited = HashSet::new();
        while let Some(name) = queue.pop_front() {
            if !visited.insert(name.clone()) {
                continue;
            }
            let Some(file) = self.files.get(&name) else {
                continue;
            };
            if out.is_empty() || !sent.contains(&name) {
                out.push(file.raw.to_vec());
                sent.insert(name);
            }
            queue.extend(file.imports.iter().cloned());
        }
        out
    }

    fn add(&mut self, file: &FileDescriptorProto, raw: Vec<u8>) -> Result<(), IndexError> {
        let name = file.name.clone().ok_or(IndexError::Unnamed)?;
        if self.files.contains_key(&name) {
            return Ok(());
        }
        let package = file.package.clone().unwrap_or_default();
        for message in &file.message_type {
            self.add_message(&name, &package, message);
        }
        for enumeration in &file.enum_type {
            self.add_enum(&name, &package, enumeration);
        }
        for extension in &file.extension {
            self.add_field(&name, &package, extension);
        }
        for service in &file.service {
            let service_name = qualify(&package, service.name());
            for method in &service.method {
                self.symbol(&name, qualify(&service_name, method.name()));
            }
            self.services.push(service_name.clone());
            self.symbol(&name, service_name);
        }
        self.files.insert(
            name,
            File {
                raw: raw.into(),
                imports: file.dependency.clone(),
            },
        );
        Ok(())
    }

    fn add_message(&mut self, file: &str, scope: &str, message: &DescriptorProto) {
        let full = qualify(scope, message.name());
        for nested in &message.nested_type {
            self.add_message(file, &full, nested);
        }
        for enumeration in &message.enum_type {
            self.add_enum(file, &full, enumeration);
        }
        for field in message.field.iter().chain(&message.extension) {
            self.add_field(file, &full, field);
        }
        for oneof in &message.oneof_decl {
            self.symbol(file, qualify(&full, oneof.name()));
        }
        self.messages.insert(full.clone());
        self.symbol(file, full);
    }

    fn add_enum(&mut self, file: &str, scope: &str, enumeration: &EnumDescriptorProto) {
        let full = qualify(scope, enumeration.name());
        for value in &enumeration.value {
            self.symbol(file, qualify(&full, value.name()));
        }
        self.symbol(file, full);
    }

    /// A field, or an extension when it names an extendee.
    fn add_field(&mut self, file: &str, scope: &str, field: &FieldDescriptorProto) {
        if let (Some(extendee), Some(number)) = (&field.extendee, field.number) {
            let extendee = extendee.trim_start_matches('.').to_owned();
            self.extensions.insert((extendee, number), file.to_owned());
        }
        self.symbol(file, qualify(scope, field.name()));
    }

    fn symbol(&mut self, file: &str, name: String) {
        self.symbols.insert(name, file.to_owned());
    }
}

/// `FileDescriptorSet` with each file left as bytes (field 1, as in
/// `descriptor.proto`), so a file is served exactly as it was registered.
#[derive(Clone, PartialEq, prost::Message)]
struct RawFileSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::new(&[messenger_proto::FILE_DESCRIPTOR_SET]).unwrap()
    }

    fn names(files: &[Vec<u8>]) -> Vec<String> {
        files
            .iter()
            .map(|raw| {
                FileDescriptorProto::decode(raw.as_slice())
                    .unwrap()
                    .name()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_file_comes_with_its_imports_once_per_stream() {
        let index = index();
        let mut sent = HashSet::new();
        let root = index.file_of_symbol("mes_grpc.MessengerServer").unwrap();
        let first = names(&index.with_dependencies(root, &mut sent));
        assert_eq!(first[0], "messenger.proto");
        let mut deps = first[1..].to_vec();
        deps.sort();
        assert_eq!(
            deps,
            [
                "google/protobuf/empty.proto",
                "google/protobuf/timestamp.proto"
            ]
        );
        // Asked again on the same stream: the file itself, no imports.
        let again = names(&index.with_dependencies(root, &mut sent));
        assert_eq!(again, ["messenger.proto"]);
        // An import asked for directly is still answered.
        let empty = names(&index.with_dependencies("google/protobuf/empty.proto", &mut sent));
        assert_eq!(empty, ["google/protobuf/empty.proto"]);
    }

    #[test]
    fn symbols_of_every_kind_are_found() {
        let index = index();
        for symbol in [
            "mes_grpc.MessengerServer",
            "mes_grpc.MessengerServer.SendMessage",
            "mes_grpc.SendMessageRequest",
            "mes_grpc.SendMessageRequest.author",
            "google.protobuf.Timestamp",
        ] {
            assert!(index.file_of_symbol(symbol).is_some(), "{symbol}");
        }
        assert!(index.file_of_symbol(".mes_grpc.MessengerServer").is_none());
        assert_eq!(
            index.extension_numbers("mes_grpc.SendMessageRequest"),
            Some(vec![])
        );
        assert_eq!(index.extension_numbers("no.Such"), None);
    }
}
