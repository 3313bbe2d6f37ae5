//! The window's panels, one file each: the menu bar, the side panel (with the Segment panel),
//! the status bar, the image views and the dialogs. State and actions live in `app.rs`.

pub mod dialogs;
pub mod menu_bar;
pub mod segment_panel;
pub mod side_panel;
pub mod status_bar;
pub mod train_panel;
pub mod views;
