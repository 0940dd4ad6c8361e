//! What a publisher sends, as the hub takes it: a leaf that the history, presence and the
//! backends share (presence builds its subscription events as publishes; the history stores them).

/// What a publisher sends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topics: Vec<String>,
    pub data: String,
    pub event_type: Option<String>,
    pub retry: Option<u64>,
    /// For subscribers whose token may read one of its topics only.
    pub private: bool,
    /// The event's id, if its publisher names it (else the hub assigns one); checked by
    /// `parse::check_id`, and free (see [`crate::hub::history::Hub::try_publish`]).
    pub id: Option<String>,
}
