//! SQL for categories, products and stock, and product search: text, category and price
//! filters, five sort orders and keyset cursors that stay stable while products are added.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sloop_events::Money;
use sloop_kit::Database;
use sloop_kit::clock::now_rfc3339;
use sloop_kit::db::is_unique_violation;
use sqlx::FromRow;

use crate::model::{Category, NewProduct, Product, ProductQuery, ProductSort};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no product has id {0}")]
    NotFound(String),
    #[error("no category `{0}`; create it first with POST /categories")]
    UnknownCategory(String),
    #[error("category `{0}` already exists")]
    DuplicateCategory(String),
    #[error(
        "product {product} has {available} in stock; changing it by {} would leave it outside 0 to {}",
        -taking, crate::MAX_STOCK
    )]
    NotEnoughStock {
        product: String,
        available: i64,
        taking: i64,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub async fn create_category(db: &Database, category: &Category) -> Result<(), CatalogError> {
    let result = sqlx::query("INSERT INTO categories (slug, name, created_at) VALUES ($1, $2, $3)")
        .bind(&category.slug)
        .bind(&category.name)
        .bind(now_rfc3339())
        .execute(db.executor())
        .await;
    match result {
        Err(err) if is_unique_violation(&err) => {
            Err(CatalogError::DuplicateCategory(category.slug.clone()))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

pub async fn categories(db: &Database) -> Result<Vec<Category>, CatalogError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT slug, name FROM categories ORDER BY slug")
            .fetch_all(db.executor())
            .await?;
    Ok(rows
        .into_iter()
        .map(|(slug, name)| Category { slug, name })
        .collect())
}

async fn category_exists(db: &Database, slug: &str) -> Result<bool, CatalogError> {
    let found: Option<(String,)> = sqlx::query_as("SELECT slug FROM categories WHERE slug = $1")
        .bind(slug)
        .fetch_optional(db.executor())
        .await?;
    Ok(found.is_some())
}

#[derive(FromRow)]
struct ProductRow {
    id: String,
    name: String,
    description: String,
    category: String,
    price_amount: i64,
    currency: String,
    available: i64,
    created_at: String,
    updated_at: String,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Product {
            id: row.id,
            name: row.name,
            description: row.description,
            category: row.category,
            price: Money {
                amount: row.price_amount,
                currency: row.currency,
            },
            available: row.available,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const SELECT_PRODUCTS: &str = "SELECT p.id, p.name, p.description, p.category, p.price_amount, \
     p.currency, i.available, p.created_at, p.updated_at \
     FROM products p JOIN inventory i ON i.product_id = p.id";

fn search_text(name: &str, description: &str) -> String {
    format!("{} {}", name.to_lowercase(), description.to_lowercase())
}

pub async fn create_product(db: &Database, input: &NewProduct) -> Result<Product, CatalogError> {
    if !category_exists(db, &input.category).await? {
        return Err(CatalogError::UnknownCategory(input.category.clone()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_rfc3339();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO products (id, name, search_text, description, category, price_amount, \
         currency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(&input.name)
    .bind(search_text(&input.name, &input.description))
    .bind(&input.description)
    .bind(&input.category)
    .bind(input.price.amount)
    .bind(&input.price.currency)
    .bind(&now)
    .execute(tx.executor())
    .await?;
    sqlx::query("INSERT INTO inventory (product_id, available, updated_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(input.available)
        .bind(&now)
        .execute(tx.executor())
        .await?;
    tx.commit().await?;
    get_product(db, &id).await
}

pub async fn get_product(db: &Database, id: &str) -> Result<Product, CatalogError> {
    let sql = format!("{SELECT_PRODUCTS} WHERE p.id = $1");
    sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.executor())
        .await?
        .map(Product::from)
        .ok_or_else(|| CatalogError::NotFound(id.to_owned()))
}

/// Saves a product's changed name, description, category or price.
pub async fn save_product(db: &Database, product: &Product) -> Result<Product, CatalogError> {
    if !category_exists(db, &product.category).await? {
        return Err(CatalogError::UnknownCategory(product.category.clone()));
    }
    let done = sqlx::query(
        "UPDATE products SET name = $1, search_text = $2, description = $3, category = $4, \
         price_amount = $5, currency = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&product.name)
    .bind(search_text(&product.name, &product.description))
    .bind(&product.description)
    .bind(&product.category)
    .bind(product.price.amount)
    .bind(&product.price.currency)
    .bind(now_rfc3339())
    .bind(&product.id)
    .execute(db.executor())
    .await?;
    if done.rows_affected() == 0 {
        return Err(CatalogError::NotFound(product.id.clone()));
    }
    get_product(db, &product.id).await
}

/// Adds `add` units (negative: takes them) in one conditional statement, so it composes with
/// orders reserving stock at the same moment.
pub async fn add_stock(db: &Database, id: &str, add: i64) -> Result<Product, CatalogError> {
    let done = sqlx::query(
        "UPDATE inventory SET available = available + $1, updated_at = $2 \
         WHERE product_id = $3 AND available + $1 >= 0 AND available + $1 <= $4",
    )
    .bind(add)
    .bind(now_rfc3339())
    .bind(id)
    .bind(crate::MAX_STOCK)
    .execute(db.executor())
    .await?;
    let product = get_product(db, id).await?;
    if done.rows_affected() == 0 {
        return Err(CatalogError::NotEnoughStock {
            product: id.to_owned(),
            available: product.available,
            taking: -add,
        });
    }
    Ok(product)
}

/// A search cursor: the last item's sort key and id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Cursor(serde_json::Value, String);

pub fn encode_cursor(sort: ProductSort, last: &Product) -> String {
    let key = match sort {
        ProductSort::Created | ProductSort::Newest => serde_json::Value::Null,
        ProductSort::Name => last.name.clone().into(),
        ProductSort::PriceAsc | ProductSort::PriceDesc => last.price.amount.into(),
    };
    let json = serde_json::to_vec(&Cursor(key, last.id.clone())).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// A cursor this service made for this sort; anything else is the client's mistake.
fn decode_cursor(sort: ProductSort, text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
    let fits = match sort {
        ProductSort::Created | ProductSort::Newest => cursor.0.is_null(),
        ProductSort::Name => cursor.0.is_string(),
        ProductSort::PriceAsc | ProductSort::PriceDesc => cursor.0.is_i64(),
    };
    fits.then_some(cursor)
}

/// A bound search parameter.
enum Param {
    Text(String),
    Int(i64),
}

/// Adds a parameter and returns its placeholder.
fn bind(param: Param, params: &mut Vec<Param>) -> String {
    params.push(param);
    format!("${}", params.len())
}

/// Why a search cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(
        "cursor does not fit this search; pass `next_cursor` from the previous page, with the same sort"
    )]
    BadCursor,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Products matching `query`, at most `limit` (the caller asks one more than a page to see
/// whether another follows). The SQL is assembled from fixed fragments only; every value the
/// client sent is a bound parameter.
pub async fn search(
    db: &Database,
    query: &ProductQuery,
    limit: u32,
) -> Result<Vec<Product>, SearchError> {
    let sort = query.sort.unwrap_or_default();
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    // Control characters never occur in stored text (names and descriptions refuse them),
    // and PostgreSQL refuses NUL in a parameter: they are dropped from the words.
    let q: String = query
        .q
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .collect();
    for word in q.split_whitespace() {
        let pattern = format!("%{}%", escape_like(&word.to_lowercase()));
        let p = bind(Param::Text(pattern), &mut params);
        clauses.push(format!("p.search_text LIKE {p} ESCAPE '\\'"));
    }
    if let Some(category) = &query.category {
        let p = bind(Param::Text(category.clone()), &mut params);
        clauses.push(format!("p.category = {p}"));
    }
    if let Some(min) = query.min_price {
        let p = bind(Param::Int(min), &mut params);
        clauses.push(format!("p.price_amount >= {p}"));
    }
    if let Some(max) = query.max_price {
        let p = bind(Param::Int(max), &mut params);
        clauses.push(format!("p.price_amount <= {p}"));
    }
    if let Some(currency) = &query.currency {
        let p = bind(Param::Text(currency.to_uppercase()), &mut params);
        clauses.push(format!("p.currency = {p}"));
    }
    if let Some(text) = &query.cursor {
        let Cursor(key, id) = decode_cursor(sort, text).ok_or(SearchError::BadCursor)?;
        let id = bind(Param::Text(id), &mut params);
        let clause = match sort {
            ProductSort::Created => format!("p.id > {id}"),
            ProductSort::Newest => format!("p.id < {id}"),
            ProductSort::Name => {
                let k = bind(
                    Param::Text(key.as_str().unwrap_or_default().to_owned()),
                    &mut params,
                );
                format!("(p.name > {k} OR (p.name = {k} AND p.id > {id}))")
            }
            ProductSort::PriceAsc => {
                let k = bind(Param::Int(key.as_i64().unwrap_or_default()), &mut params);
                format!("(p.price_amount > {k} OR (p.price_amount = {k} AND p.id > {id}))")
            }
            ProductSort::PriceDesc => {
                let k = bind(Param::Int(key.as_i64().unwrap_or_default()), &mut params);
                format!("(p.price_amount < {k} OR (p.price_amount = {k} AND p.id > {id}))")
            }
        };
        clauses.push(clause);
    }
    let order = match sort {
        ProductSort::Created => "p.id",
        ProductSort::Newest => "p.id DESC",
        ProductSort::Name => "p.name, p.id",
        ProductSort::PriceAsc => "p.price_amount, p.id",
        ProductSort::PriceDesc => "p.price_amount DESC, p.id",
    };
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let limit_param = bind(Param::Int(i64::from(limit)), &mut params);
    let sql = format!("{SELECT_PRODUCTS}{filter} ORDER BY {order} LIMIT {limit_param}");
    let mut statement = sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql));
    for param in params {
        statement = match param {
            Param::Text(text) => statement.bind(text),
            Param::Int(n) => statement.bind(n),
        };
    }
    let rows = statement.fetch_all(db.executor()).await?;
    Ok(rows.into_iter().map(Product::from).collect())
}

/// `%`, `_` and the escape character itself match literally in a search word.
fn escape_like(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(name: &str, amount: i64) -> Product {
        Product {
            id: "0192f0c0-0000-7000-8000-000000000001".into(),
            name: name.into(),
            description: String::new(),
            category: "c".into(),
            price: Money {
                amount,
                currency: "EUR".into(),
            },
            available: 1,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        let last = product("Kettle", 2599);
        for sort in [
            ProductSort::Created,
            ProductSort::Newest,
            ProductSort::Name,
            ProductSort::PriceAsc,
            ProductSort::PriceDesc,
        ] {
            let text = encode_cursor(sort, &last);
            assert!(decode_cursor(sort, &text).is_some(), "{sort:?}");
        }
        let by_name = encode_cursor(ProductSort::Name, &last);
        assert!(decode_cursor(ProductSort::PriceAsc, &by_name).is_none());
        assert!(decode_cursor(ProductSort::Name, "not a cursor").is_none());
    }

    #[test]
    fn like_wildcards_match_literally() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
