//! Integration and end-to-end tests against real servers live in `tests/`;
//! this library is empty.
