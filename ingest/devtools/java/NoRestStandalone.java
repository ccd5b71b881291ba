// Copied from the Debezium corpus tools (../shared/debezium-corpus/tools/NoRestStandalone.java), unchanged below.
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.runtime.Worker;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.runtime.standalone.StandaloneConfig;
import org.apache.kafka.connect.runtime.standalone.StandaloneHerder;
import org.apache.kafka.connect.storage.FileOffsetBackingStore;

import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * Kafka Connect standalone worker WITHOUT the REST server: the same Worker + StandaloneHerder +
 * FileOffsetBackingStore wiring as org.apache.kafka.connect.cli.ConnectStandalone (Kafka 4.3), minus
 * ConnectRestServer, so it needs no Jetty/Jersey jars.
 * usage: NoRestStandalone worker.properties connector.properties
 */
public class NoRestStandalone {
    public static void main(String[] args) throws Exception {
        Map<String, String> workerProps = Utils.propsToStringMap(Utils.loadProps(args[0]));
        Plugins plugins = new Plugins(workerProps);
        plugins.compareAndSwapWithDelegatingLoader();
        StandaloneConfig config = new StandaloneConfig(workerProps);
        ConnectorClientConfigOverridePolicy policy = plugins.newPlugin(
                config.getString(WorkerConfig.CONNECTOR_CLIENT_POLICY_CLASS_CONFIG), config, ConnectorClientConfigOverridePolicy.class);
        FileOffsetBackingStore offsets = new FileOffsetBackingStore(
                plugins.newInternalConverter(true, JsonConverter.class.getName(), Map.of("schemas.enable", "false")));
        offsets.configure(config);
        Worker worker = new Worker("norest-standalone", Time.SYSTEM, plugins, config, offsets, policy);
        StandaloneHerder herder = new StandaloneHerder(worker, config.kafkaClusterId(), policy);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> { herder.stop(); stopped.countDown(); }));
        herder.start();
        Map<String, String> connProps = Utils.propsToStringMap(Utils.loadProps(args[1]));
        herder.putConnectorConfig(connProps.get("name"), connProps, false, (err, created) -> {
            if (err != null) { System.err.println("connector creation failed: " + err); err.printStackTrace(); System.exit(1); }
            else System.err.println("connector created: " + created.result().name());
        });
        stopped.await();
    }
}
