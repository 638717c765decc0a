//! STUB: replaced by the real engine implementation.
#![allow(unused_variables)]
use async_trait::async_trait;

use super::*;

pub struct SqliteStore;

impl SqliteStore {
    pub async fn connect(url: &str, options: &ConnectOptions) -> StoreResult<Self> {
        unimplemented!()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> &'static str { unimplemented!() }
    async fn migrate(&self) -> StoreResult<()> { unimplemented!() }
    async fn ping(&self) -> StoreResult<()> { unimplemented!() }
    async fn journal_rejected(&self, entry: &NewCallback) -> StoreResult<i64> { unimplemented!() }
    async fn accept_signed(&self, entry: &NewCallback, result: &IncomingResult, job: JobEffect) -> StoreResult<(MergeOutcome, Verification)> { unimplemented!() }
    async fn accept_return_get(&self, entry: &NewCallback, biz_id: &str, job: NewJob) -> StoreResult<Verification> { unimplemented!() }
    async fn get(&self, biz_id: &str) -> StoreResult<Option<Verification>> { unimplemented!() }
    async fn list(&self, query: &ListQuery) -> StoreResult<Vec<Verification>> { unimplemented!() }
    async fn callbacks(&self, query: &CallbackQuery) -> StoreResult<Vec<CallbackRecord>> { unimplemented!() }
    async fn lease_due_jobs(&self, owner: &str, now: i64, lease_until: i64, limit: i64) -> StoreResult<Vec<LeasedJob>> { unimplemented!() }
    async fn reserve_call(&self, biz_id: &str, owner: &str, now: i64, max_calls: i32) -> StoreResult<Option<i32>> { unimplemented!() }
    async fn update_job(&self, biz_id: &str, owner: &str, now: i64, update: &JobUpdate) -> StoreResult<()> { unimplemented!() }
    async fn save_fetched(&self, owner: &str, result: &IncomingResult, images: &[NewImage], update: &JobUpdate) -> StoreResult<MergeOutcome> { unimplemented!() }
    async fn schedule_fetch(&self, biz_id: &str, job: NewJob, now: i64) -> StoreResult<FetchInfo> { unimplemented!() }
    async fn request_fetch(&self, biz_id: &str, biz_no: Option<&str>, job: NewJob, now: i64) -> StoreResult<Verification> { unimplemented!() }
    async fn image(&self, biz_id: &str, name: &str) -> StoreResult<Option<Vec<u8>>> { unimplemented!() }
}
