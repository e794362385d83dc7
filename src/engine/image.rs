//! The engine's whole state as plain data: what a snapshot file holds
//! (`crate::snapshot` turns it into bytes; `restore` rebuilds an engine).
//!
//! An image of 10^6 users is hundreds of megabytes as Rust values, so it
//! is also handed out and taken back piece by piece (`ImagePart`,
//! `ImageSource`): a snapshot is encoded straight from the engine and
//! decoded straight into one, one user at a time, in the order of the
//! snapshot format. [`EngineImage`] is the same data whole, for tests,
//! fuzzing and `flashsale snapshot inspect`. Users are listed stripe by
//! stripe, in slot order, so rebuilding recreates every user in the same
//! slot.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bincode::{Decode, Encode};

use super::config::SaleSettings;
use super::outcome::PurchaseItem;
use super::sales::SaleState;
use super::users::UserStripe;
use super::Engine;

/// Everything the engine holds. Field order is part of the snapshot format.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EngineImage {
    /// The engine's time floor (milliseconds since the Unix epoch).
    pub time_floor_unix_ms: i64,
    /// Held sales, oldest first.
    pub sales: Vec<SaleImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SaleImage {
    pub sale_id: u32,
    pub items_per_sale: u32,
    pub user_limit: u32,
    /// Sequence number of the sale's `SaleOpened` record (0: none).
    pub opened_seq: u64,
    /// Items sold, checked against the rebuilt sold bits.
    pub items_sold: u32,
    /// Stripe by stripe, in slot order.
    pub users: Vec<UserImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct UserImage {
    pub user_id: String,
    /// Oldest first.
    pub purchases: Vec<PurchaseImage>,
    pub open_cart: Option<CartImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PurchaseImage {
    pub code: u128,
    /// The purchase record's sequence number (also its claims').
    pub seq: u64,
    /// The cart, in order, each item with its outcome.
    pub items: Vec<PurchaseItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CartImage {
    pub code: u128,
    pub items: Vec<u32>,
}

impl EngineImage {
    pub fn users(&self) -> usize {
        self.sales.iter().map(|sale| sale.users.len()).sum()
    }

    /// The image as an [`ImageSource`], piece by piece.
    pub fn source(&self) -> impl ImageSource + '_ {
        ImageCursor {
            image: self,
            started: false,
            sale: None,
            user: 0,
        }
    }
}

/// A sale's own fields, without its users (they follow it). Field order
/// is part of the snapshot format (the fields of [`SaleImage`] before
/// `users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SaleHeader {
    pub sale_id: u32,
    pub items_per_sale: u32,
    pub user_limit: u32,
    pub opened_seq: u64,
    pub items_sold: u32,
}

/// One piece of an image, in the snapshot format's order: `Start`, then
/// each sale followed by its users.
#[derive(Debug)]
pub enum ImagePart<'a> {
    /// The time floor and how many sales follow.
    Start {
        time_floor_unix_ms: i64,
        sales: u64,
    },
    /// A sale and how many users follow it.
    Sale {
        header: SaleHeader,
        users: u64,
    },
    User(&'a UserImage),
}

/// Where a restore reads an image, piece by piece, in the order of
/// [`ImagePart`]; errors say why the piece cannot be read.
pub trait ImageSource {
    /// The time floor and the number of sales.
    fn start(&mut self) -> Result<(i64, u64), String>;
    /// The next sale and the number of its users.
    fn sale(&mut self) -> Result<(SaleHeader, u64), String>;
    /// The next user of the current sale.
    fn user(&mut self) -> Result<UserImage, String>;
}

struct ImageCursor<'a> {
    image: &'a EngineImage,
    started: bool,
    sale: Option<usize>,
    user: usize,
}

impl ImageSource for ImageCursor<'_> {
    fn start(&mut self) -> Result<(i64, u64), String> {
        self.started = true;
        Ok((self.image.time_floor_unix_ms, self.image.sales.len() as u64))
    }

    fn sale(&mut self) -> Result<(SaleHeader, u64), String> {
        let next = self.sale.map_or(0, |n| n + 1);
        let sale = self.image.sales.get(next).ok_or("no more sales")?;
        self.sale = Some(next);
        self.user = 0;
        let header = SaleHeader {
            sale_id: sale.sale_id,
            items_per_sale: sale.items_per_sale,
            user_limit: sale.user_limit,
            opened_seq: sale.opened_seq,
            items_sold: sale.items_sold,
        };
        Ok((header, sale.users.len() as u64))
    }

    fn user(&mut self) -> Result<UserImage, String> {
        let sale = self.sale.and_then(|n| self.image.sales.get(n));
        let user = sale.and_then(|sale| sale.users.get(self.user));
        self.user += 1;
        user.cloned().ok_or_else(|| "no more users".to_string())
    }
}

impl Engine {
    /// The whole state. Walks every user (one stripe locked at a time):
    /// meant for an engine nobody else writes to (the snapshot builder's).
    pub fn image(&self) -> EngineImage {
        let mut image = EngineImage {
            time_floor_unix_ms: 0,
            sales: Vec::new(),
        };
        let collected = self.image_parts(|part| {
            match part {
                ImagePart::Start {
                    time_floor_unix_ms, ..
                } => image.time_floor_unix_ms = time_floor_unix_ms,
                ImagePart::Sale { header, users } => image.sales.push(SaleImage {
                    sale_id: header.sale_id,
                    items_per_sale: header.items_per_sale,
                    user_limit: header.user_limit,
                    opened_seq: header.opened_seq,
                    items_sold: header.items_sold,
                    users: Vec::with_capacity(users as usize),
                }),
                ImagePart::User(user) => {
                    if let Some(sale) = image.sales.last_mut() {
                        sale.users.push(user.clone());
                    }
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
        match collected {
            Ok(()) => image,
        }
    }

    /// Hands the whole state to `emit` piece by piece, one user at a time
    /// (one stripe locked at a time), stopping at its first error. Meant
    /// for an engine nobody else writes to (the snapshot builder's).
    pub fn image_parts<E>(
        &self,
        mut emit: impl FnMut(ImagePart<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let sales: Vec<(Arc<SaleState>, u64)> = self
            .sales
            .all()
            .into_iter()
            .map(|sale| {
                let mut users = 0u64;
                sale.users
                    .for_each_stripe(|stripe| users += u64::from(stripe.len()));
                (sale, users)
            })
            .filter(|(sale, users)| sale.opened_seq() != 0 || *users > 0)
            .collect();
        emit(ImagePart::Start {
            time_floor_unix_ms: self.time_floor_unix_ms.load(Ordering::Acquire),
            sales: sales.len() as u64,
        })?;
        for (sale, users) in &sales {
            let header = sale_header(sale);
            emit(ImagePart::Sale {
                header,
                users: *users,
            })?;
            let mut result = Ok(());
            sale.users.for_each_stripe(|stripe| {
                for (slot, _) in stripe.iter() {
                    if result.is_ok() {
                        result = emit(ImagePart::User(&user_image(stripe, slot)));
                    }
                }
            });
            result?;
        }
        Ok(())
    }
}

fn user_image(stripe: &UserStripe, slot: u32) -> UserImage {
    let state = stripe.user(slot);
    let purchases = state
        .purchases()
        .map(|purchase| PurchaseImage {
            code: stripe.code(slot, purchase.secret).as_u128(),
            seq: purchase.seq,
            items: purchase.items().collect(),
        })
        .collect();
    let open_cart = stripe.open_code(slot).map(|code| CartImage {
        code: code.as_u128(),
        items: state.cart().collect(),
    });
    UserImage {
        user_id: state.id().to_string(),
        purchases,
        open_cart,
    }
}

fn sale_header(sale: &SaleState) -> SaleHeader {
    let SaleSettings {
        items_per_sale,
        user_limit,
    } = sale.settings;
    SaleHeader {
        sale_id: sale.id.number(),
        items_per_sale,
        user_limit,
        opened_seq: sale.opened_seq(),
        items_sold: sale.inventory.items_sold(),
    }
}
