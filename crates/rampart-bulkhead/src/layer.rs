//! [`BulkheadLayer`] (one bulkhead) and [`KeyedBulkheadLayer`] (one partition per key).

use std::{fmt, hash::Hash, marker::PhantomData, sync::Arc};

use rampart_core::error::ConfigError;
use tower_layer::Layer;

use crate::{
    config::{BulkheadConfig, BulkheadConfigBuilder},
    handle::{BulkheadHandle, KeyedBulkheadHandle},
    partitions::Partitions,
    policy::Core,
    priority::DefaultClass,
    release::OnResponse,
    service::{Bulkhead, KeyedBulkhead},
};

/// Puts a service behind a bulkhead.
///
/// The bulkhead lives in the layer behind an `Arc`: every service the layer makes, and every
/// clone of those, shares its permits. Apply one layer per downstream dependency and reuse it
/// wherever that dependency is called (several routes, several clients): they then share one
/// limit.
///
/// `P` names each request's priority class ([`Prioritize`](crate::Prioritize)); the default,
/// [`DefaultClass`], puts every request in the default class.
pub struct BulkheadLayer<P = DefaultClass, H = OnResponse> {
    core: Arc<Core>,
    prioritize: P,
    release: H,
}

impl<P: Clone, H: Clone> Clone for BulkheadLayer<P, H> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            prioritize: self.prioritize.clone(),
            release: self.release.clone(),
        }
    }
}

impl<P, H> fmt::Debug for BulkheadLayer<P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", &self.core.name)
            .finish()
    }
}

impl BulkheadLayer {
    /// A layer with a bulkhead built from `config`.
    pub fn new(config: &BulkheadConfig) -> Self {
        Self {
            core: Core::unkeyed(config, Arc::from(config.name())),
            prioritize: DefaultClass,
            release: OnResponse,
        }
    }

    /// A configuration builder; finish it with [`layer`](BulkheadConfigBuilder::layer).
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfig::builder()
    }
}

impl<P, H> BulkheadLayer<P, H> {
    /// Names each request's class with `prioritize`. The bulkhead (and its handle) is kept.
    pub fn prioritize<P2>(self, prioritize: P2) -> BulkheadLayer<P2, H> {
        BulkheadLayer {
            core: self.core,
            prioritize,
            release: self.release,
        }
    }

    /// For HTTP services: holds each permit until the response body ends, not just until the
    /// response head arrives (see [`OnBodyEnd`](crate::OnBodyEnd)).
    #[cfg(feature = "http")]
    pub fn release_on_body_end(self) -> BulkheadLayer<P, crate::release::OnBodyEnd> {
        BulkheadLayer {
            core: self.core,
            prioritize: self.prioritize,
            release: crate::release::OnBodyEnd,
        }
    }

    /// A handle on the bulkhead.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle {
            core: self.core.clone(),
        }
    }

    /// Takes a permit for a call of class `class` (`None`, or a name no class has, is the
    /// default class), outside tower: the entry point for adapters that are not tower services
    /// (rampart-reqwest's middleware).
    ///
    /// The same rules as the service: a free permit at once; else, with `max_wait`, a place in
    /// the bounded queue of the class; else a [`BulkheadFull`](crate::BulkheadFull). Hold the
    /// [`Permit`](crate::Permit) while the call runs; dropping it releases it.
    ///
    /// ```
    /// use rampart_bulkhead::{BulkheadLayer, FullReason};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let bulkhead = BulkheadLayer::builder().max_concurrent(1).layer().unwrap();
    /// let permit = bulkhead.acquire(None).await.unwrap();
    /// let full = bulkhead.acquire(None).await.unwrap_err();
    /// assert_eq!(full.reason(), FullReason::NoCapacity);
    /// drop(permit);
    /// assert!(bulkhead.acquire(None).await.is_ok());
    /// # }
    /// ```
    pub fn acquire(&self, class: Option<&str>) -> crate::acquire::AcquirePermit {
        let class = self.core.class_index(class);
        crate::acquire::AcquirePermit::new(&self.core, class)
    }
}

impl<S, P: Clone, H: Clone> Layer<S> for BulkheadLayer<P, H> {
    type Service = Bulkhead<S, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_parts(
            inner,
            self.core.clone(),
            self.prioritize.clone(),
            self.release.clone(),
        )
    }
}

impl BulkheadConfigBuilder {
    /// Validates the configuration and builds a [`BulkheadLayer`].
    pub fn layer(self) -> Result<BulkheadLayer, ConfigError> {
        Ok(BulkheadLayer::new(&self.build()?))
    }

    /// Validates the configuration and builds a [`KeyedBulkheadLayer`] that keeps one
    /// partition, with this configuration, per key extracted by `extractor`.
    pub fn keyed<X, K>(self, extractor: X) -> Result<KeyedBulkheadLayer<X, K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Debug,
    {
        Ok(KeyedBulkheadLayer::new(self.build()?, extractor))
    }
}

/// Keeps one bulkhead partition per key: per tenant, per host, per route.
///
/// Each partition has the full configuration (capacity, classes, queue) to itself. The key comes
/// from a [`KeyExtractor`](rampart_core::key::KeyExtractor); requests without one share a
/// fallback partition. The registry is bounded by
/// [`max_keys`](BulkheadConfigBuilder::max_keys) and
/// [`idle_timeout`](BulkheadConfigBuilder::idle_timeout); a partition with calls in flight is
/// never evicted.
pub struct KeyedBulkheadLayer<X, K, P = DefaultClass, H = OnResponse> {
    partitions: Arc<Partitions<K>>,
    extractor: X,
    prioritize: P,
    release: H,
    _key: PhantomData<fn() -> K>,
}

impl<X: Clone, K, P: Clone, H: Clone> Clone for KeyedBulkheadLayer<X, K, P, H> {
    fn clone(&self) -> Self {
        Self {
            partitions: self.partitions.clone(),
            extractor: self.extractor.clone(),
            prioritize: self.prioritize.clone(),
            release: self.release.clone(),
            _key: PhantomData,
        }
    }
}

impl<X, K: fmt::Debug, P, H> fmt::Debug for KeyedBulkheadLayer<X, K, P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<X, K> KeyedBulkheadLayer<X, K>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    /// One partition per key extracted by `extractor`, each built from `config`.
    pub fn new(config: BulkheadConfig, extractor: X) -> Self {
        Self {
            partitions: Arc::new(Partitions::new(config)),
            extractor,
            prioritize: DefaultClass,
            release: OnResponse,
            _key: PhantomData,
        }
    }
}

impl<X, K, P, H> KeyedBulkheadLayer<X, K, P, H>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    /// Names each request's class with `prioritize`.
    pub fn prioritize<P2>(self, prioritize: P2) -> KeyedBulkheadLayer<X, K, P2, H> {
        KeyedBulkheadLayer {
            partitions: self.partitions,
            extractor: self.extractor,
            prioritize,
            release: self.release,
            _key: PhantomData,
        }
    }

    /// For HTTP services: holds each permit until the response body ends.
    #[cfg(feature = "http")]
    pub fn release_on_body_end(self) -> KeyedBulkheadLayer<X, K, P, crate::release::OnBodyEnd> {
        KeyedBulkheadLayer {
            partitions: self.partitions,
            extractor: self.extractor,
            prioritize: self.prioritize,
            release: crate::release::OnBodyEnd,
            _key: PhantomData,
        }
    }

    /// A handle on the partitions: look one up by key, list them.
    pub fn handle(&self) -> KeyedBulkheadHandle<K> {
        KeyedBulkheadHandle {
            partitions: self.partitions.clone(),
        }
    }

    /// The key extractor the layer was built with.
    pub fn extractor(&self) -> &X {
        &self.extractor
    }

    /// Takes a permit of class `class` in the partition of `key` (made on first use; `None` is
    /// the shared fallback partition), outside tower. See [`BulkheadLayer::acquire`].
    pub fn acquire(&self, key: Option<K>, class: Option<&str>) -> crate::acquire::AcquirePermit {
        let core = self.partitions.core(key);
        let class = core.class_index(class);
        crate::acquire::AcquirePermit::new(&core, class)
    }
}

impl<S, X: Clone, K, P: Clone, H: Clone> Layer<S> for KeyedBulkheadLayer<X, K, P, H> {
    type Service = KeyedBulkhead<S, X, K, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead::from_parts(
            inner,
            self.partitions.clone(),
            self.extractor.clone(),
            self.prioritize.clone(),
            self.release.clone(),
        )
    }
}
